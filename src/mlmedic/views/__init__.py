"""What people read: the dashboard as data (``dashboard``), the same as one HTML page
(``page``), and the terminal views of reports, audits and events (``terminal``)."""
