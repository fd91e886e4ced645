"""The event service's rules, free of I/O: what work an event asks of this organization
(``dispatch``), what the follower records (``follow``) and what the news feed shows (``feed``)."""
