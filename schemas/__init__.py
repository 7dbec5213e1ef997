"""Avro schemas (.avsc): the only place a wire format is defined."""
