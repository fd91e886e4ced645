"""Compute's rules, free of gRPC, NATS, SQL and I/O (unit-tested in ``tests/unit/compute``).

``execution``   what an executor is given (:class:`TaskSpec`) and gives back (:class:`ExecutionResult`)
``layout``      the substratools contract: output file names, the arguments file, performance files
``places``      where compute keeps things in its work folder (cache, archives, build logs)
``builds``      whether a build message is acted on; a build failure's report
``inputs``      which input files a task needs, from whom, and where the cache keeps them
``outputs``     which outputs a task saves and what the ledger records for them
``runs``        what a StartTask answer means; how an execution's end becomes a completion or a failure
``reconcile``   which stranded tasks to re-queue and which local runs the ledger has ended
``listing``     paging the running tasks
"""
