"""The paper-style report: store + check results -> ReportData (``read``, the records in
``data``) -> figures (``figures``) and pages (``page``)."""
