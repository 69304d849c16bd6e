"""The test suite. Our SQLite tables key each row by its thread's number:
``THREAD_IS`` is a condition that rows belong to the thread whose name is
``.format``-ed in (a bound ``?`` or a literal), ``THREAD_NAME`` a row's
thread's name."""

THREAD_IS = "thread = (SELECT id FROM fc_threads WHERE name = {})"
THREAD_NAME = "(SELECT name FROM fc_threads WHERE id = thread)"
