"""Releases judged on live traffic (#24, #31): the state machine and the record
(``states``), and the judgment — the verdict, the paired comparison and the commands
(``judge``). The processes that serve a release are ``mlmedic.serving.releases``."""
