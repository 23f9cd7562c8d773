"""The stores: the action log (``events``: SQLite or Postgres), the buffer that keeps it while
it cannot write (``eventbuffer``), and the prediction and feedback logs (``logstore``). Above the
foundation only; every other layer records through them."""
