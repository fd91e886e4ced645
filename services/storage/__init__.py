"""The storage service: one organization's files, streamed, checked by sha256, served by permission."""
