"""The outside world: stores, files for the post office and banks, later Kafka and Avro."""
