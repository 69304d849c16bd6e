"""The test suite. ``THREAD_IS``: a condition on one of our SQLite tables'
rows, that they belong to the thread whose name is ``.format``-ed in (a bound
``?`` or a literal): the tables key each row by its thread's number."""

THREAD_IS = "thread = (SELECT id FROM fc_threads WHERE name = {})"
