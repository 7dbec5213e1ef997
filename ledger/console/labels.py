"""The console's words in Vietnamese and English, and amounts as Vietnamese read them."""

from __future__ import annotations

LANGUAGES = ("vi", "en")

_LABELS: dict[str, dict[str, str]] = {
    "title": {"vi": "Sổ chi trả trợ giúp xã hội", "en": "Social assistance payments ledger"},
    "login": {"vi": "Đăng nhập", "en": "Log in"},
    "logout": {"vi": "Đăng xuất", "en": "Log out"},
    "user": {"vi": "Người dùng", "en": "User"},
    "password": {"vi": "Mật khẩu", "en": "Password"},
    "desk": {
        "vi": "Kho nhúng: một bàn làm việc, không có mật khẩu",
        "en": "Embedded store: one desk, no password",
    },
    "payroll": {"vi": "Bảng chi trả", "en": "Payroll"},
    "person": {"vi": "Đối tượng", "en": "Person"},
    "receivables": {"vi": "Khoản phải thu hồi", "en": "Receivables"},
    "period": {"vi": "Kỳ (YYYY-MM)", "en": "Period (YYYY-MM)"},
    "show": {"vi": "Xem", "en": "Show"},
    "draft": {"vi": "Lập danh sách kỳ này", "en": "Draft this period"},
    "approve": {"vi": "Phê duyệt kỳ này", "en": "Approve this period"},
    "province": {"vi": "Tỉnh", "en": "Province"},
    "status": {"vi": "Trạng thái", "en": "Status"},
    "lines": {"vi": "Số dòng", "en": "Lines"},
    "total": {"vi": "Tổng (VND)", "en": "Total (VND)"},
    "bank": {"vi": "Qua ngân hàng (VND)", "en": "By bank (VND)"},
    "receivable": {"vi": "Phải thu (VND)", "en": "Receivable (VND)"},
    "drafted_by": {"vi": "Người lập", "en": "Drafted by"},
    "approved_by": {"vi": "Người duyệt", "en": "Approved by"},
    "no_lists": {"vi": "Không có danh sách cho kỳ này", "en": "No list for this period"},
    "personal_id": {"vi": "Số định danh cá nhân", "en": "Personal id"},
    "find": {"vi": "Tìm", "en": "Find"},
    "refused": {"vi": "Bị từ chối", "en": "Refused"},
    "back": {"vi": "Quay lại", "en": "Back"},
    "language": {"vi": "English", "en": "Tiếng Việt"},
    "signed_in_as": {"vi": "Đăng nhập với", "en": "Signed in as"},
    "amount": {"vi": "Số tiền (VND)", "en": "Amount (VND)"},
    "nothing": {"vi": "Không có", "en": "None"},
    "lists_drafted": {"vi": "danh sách đã lập", "en": "lists drafted"},
    "lists_approved": {"vi": "danh sách đã phê duyệt", "en": "lists approved"},
    "lists_exported": {"vi": "tệp đã xuất", "en": "files exported"},
    "export": {"vi": "Xuất tệp chi trả", "en": "Export the payment files"},
    "files": {"vi": "Tệp đã xuất", "en": "Exported files"},
    "settlement": {"vi": "Kết quả chi trả", "en": "Settlement"},
    "audit": {"vi": "Nhật ký kiểm toán", "en": "Audit trail"},
    "actor": {"vi": "Người thực hiện", "en": "Actor"},
    "source": {"vi": "Nguồn", "en": "Source"},
    "since": {"vi": "Từ ngày (YYYY-MM-DD)", "en": "From (YYYY-MM-DD)"},
    "until": {"vi": "Đến trước ngày (YYYY-MM-DD)", "en": "Before (YYYY-MM-DD)"},
    "recorded_at": {"vi": "Thời điểm ghi", "en": "Recorded at"},
    "event": {"vi": "Sự kiện", "en": "Event"},
    "record": {"vi": "Hồ sơ", "en": "Record"},
    "older": {"vi": "Cũ hơn", "en": "Older"},
    "results_file": {"vi": "Tệp kết quả (CSV)", "en": "Results file (CSV)"},
    "check": {"vi": "Kiểm tra (chưa ghi)", "en": "Check (nothing recorded)"},
    "apply": {"vi": "Ghi nhận", "en": "Apply"},
    "would_apply": {"vi": "sẽ được ghi nhận", "en": "would be applied"},
    "applied": {"vi": "đã ghi nhận", "en": "applied"},
    "unchanged": {"vi": "đã ghi nhận trước đó", "en": "applied before (unchanged)"},
    "lines_change": {"vi": "Chênh lệch số dòng", "en": "Lines vs last month"},
    "amount_change": {"vi": "Chênh lệch tiền (VND)", "en": "Amount vs last month (VND)"},
    "bank_share": {"vi": "Tỷ lệ qua ngân hàng", "en": "Bank share"},
    "held": {"vi": "Tạm dừng", "en": "Held"},
    "waiting": {"vi": "Chờ người nhận mai táng", "en": "Waiting for a claimant"},
    "all": {"vi": "Tất cả", "en": "All"},
    "list_hint": {
        "vi": "Chọn một tỉnh để xem thay đổi so với tháng trước và các dòng cần xem trước.",
        "en": "Choose a province to see what changed from last month and the lines to check first.",
    },
    "list_of": {"vi": "Danh sách", "en": "List"},
    "compared_with": {"vi": "So với tháng", "en": "Compared with"},
    "no_previous": {
        "vi": "Tháng trước không có danh sách đã phê duyệt của tỉnh này.",
        "en": "No approved list of this province last month.",
    },
    "change": {"vi": "Thay đổi", "en": "Change"},
    "people": {"vi": "Số người", "en": "People"},
    "new": {"vi": "Mới", "en": "New"},
    "ended": {"vi": "Không còn chi trả", "en": "No longer paid"},
    "changed": {"vi": "Thay đổi số tiền", "en": "Amount changed"},
    "largest_arrears": {"vi": "Truy lĩnh lớn nhất", "en": "Largest arrears"},
    "funeral_lines": {"vi": "Dòng mai táng phí", "en": "Funeral lines"},
    "movers": {"vi": "Chuyển nơi ở", "en": "Moved"},
    "above_limit": {"vi": "Vượt ngưỡng xem xét", "en": "Above their review limit"},
    "payment_id": {"vi": "Mã chi trả", "en": "Payment id"},
    "payee": {"vi": "Người nhận", "en": "Payee"},
    "arrears": {"vi": "Truy lĩnh (VND)", "en": "Arrears (VND)"},
    "review_limit": {"vi": "Ngưỡng (VND)", "en": "Limit (VND)"},
    "moved_from": {"vi": "Từ (tỉnh/xã)", "en": "From (province/commune)"},
    "moved_to": {"vi": "Đến (tỉnh/xã)", "en": "To (province/commune)"},
    "of_total": {"vi": "trên tổng số", "en": "of"},
    "not_looked_up": {
        "vi": "người mới chưa được tra nơi ở tháng trước",
        "en": "new people whose province last month was not looked up",
    },
    "id_or_name": {
        "vi": "Số định danh hoặc họ tên (phần đầu)",
        "en": "Personal id, or the beginning of a name",
    },
    "named": {"vi": "Đối tượng có tên bắt đầu bằng", "en": "People whose name begins with"},
    "full_name": {"vi": "Họ và tên", "en": "Full name"},
    "date_of_birth": {"vi": "Ngày sinh", "en": "Date of birth"},
    "commune": {"vi": "Xã", "en": "Commune"},
    "more": {"vi": "Tiếp theo", "en": "More"},
    "last_verify": {"vi": "Lần kiểm tra toàn vẹn gần nhất", "en": "The last verify"},
    "verify_ok": {
        "vi": "Lịch sử nguyên vẹn, mọi dữ liệu dẫn xuất khớp",
        "en": "The history is intact and everything derived from it agrees",
    },
    "verify_failed": {"vi": "Phát hiện vấn đề", "en": "Problems found"},
    "problems": {"vi": "vấn đề", "en": "problems"},
    "unchecked": {"vi": "mục chưa kiểm tra được", "en": "checks not run"},
    "never_verified": {
        "vi": "Chưa chạy `ledger verify` trên kho này.",
        "en": "`ledger verify` has not been run on this store.",
    },
    "check_name": {"vi": "Kiểm tra", "en": "Check"},
    "result": {"vi": "Kết quả", "en": "Result"},
    "found": {"vi": "Nội dung", "en": "Checked or found"},
    "trail": {"vi": "Các sự kiện", "en": "The events"},
    "totals": {"vi": "Tổng hợp", "en": "Totals"},
    "totals_by_month": {"vi": "Tổng chi trả theo tháng (VND)", "en": "Totals by month (VND)"},
    "bank_share_by_month": {
        "vi": "Tỷ lệ chi trả qua ngân hàng theo tháng",
        "en": "The bank's share by month",
    },
    "totals_by_province": {"vi": "Tổng chi trả theo tỉnh", "en": "Totals by province"},
    "by_bank": {"vi": "Qua ngân hàng", "en": "By bank"},
    "by_post": {"vi": "Qua bưu điện", "en": "By post"},
    "lists": {"vi": "Số danh sách", "en": "Lists"},
    "computing": {"vi": "Đang tính, đã đọc", "en": "Working them out: read"},
    "accounts_read": {"vi": "tài khoản", "en": "accounts"},
    "computation_failed": {"vi": "Không tính được", "en": "Could not work them out"},
    "worked_out_at": {"vi": "Tính đến sự kiện số", "en": "Worked out at event"},
    "events_since": {"vi": "sự kiện mới từ đó", "en": "events recorded since"},
    "work_out_again": {"vi": "Tính lại", "en": "Work them out again"},
    "debtor": {"vi": "Người phải hoàn trả", "en": "Who owes"},
    "months_overpaid": {"vi": "Các tháng chi thừa", "en": "Months overpaid"},
    "registration": {"vi": "Số đăng ký khai tử", "en": "Death registration"},
    "learned_after": {"vi": "Biết sau (ngày)", "en": "Learned after (days)"},
    "previous": {"vi": "Trước", "en": "Previous"},
    "reviewing": {
        "vi": "Đang so sánh với tháng trước…",
        "en": "Comparing with the month before…",
    },
    "none_approved": {
        "vi": "Chưa có danh sách nào của kỳ này được phê duyệt.",
        "en": "No list of this period is approved.",
    },
    "settlement_state": {
        "vi": "Kết quả chi trả theo trạng thái",
        "en": "Lines by what became of them",
    },
    "exported_mark": {"vi": "đã xuất tệp", "en": "files exported"},
}


def labels(lang: str) -> dict[str, str]:
    return {key: words[lang] for key, words in _LABELS.items()}


def vnd(amount: object) -> str:
    """An integer amount of dong as Vietnamese write it: dots between thousands."""
    if not isinstance(amount, int):
        return str(amount)
    return f"{amount:,}".replace(",", ".")


def share(part: object, whole: object) -> str:
    """A part of a whole as a percentage to one decimal, in integers (no float near money)."""
    if not isinstance(part, int) or not isinstance(whole, int) or whole <= 0:
        return "–"
    tenths = (1000 * part + whole // 2) // whole
    return f"{tenths // 10},{tenths % 10}%"
