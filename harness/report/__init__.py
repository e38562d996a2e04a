"""The paper-style report: store -> ReportData (load.py) -> figures and pages (page.py)."""
