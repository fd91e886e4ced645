"""Where storage keeps things: the ``files`` table (:mod:`.files` the protocol, :mod:`.sql` on PostgreSQL,
:mod:`.tables` the schema) and the bytes (:mod:`.blobs`, content-addressed)."""
