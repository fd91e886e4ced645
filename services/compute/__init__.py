"""The compute service: builds functions and runs tasks for one organization.

Rooms, dependencies pointing inward (to ``domain``):

``__main__`` → ``bootstrap``   composition root: builds and wires everything below
``settings``                  the environment it reads
``server``                    gRPC handlers (status, running tasks, cancel): translate only
``domain/``                   the rules, free of gRPC, NATS, SQL and I/O (see its ``__init__``)
``consumer``                  the NATS work consumer: fetch, heartbeat, ack or redeliver
``builds``                    a build message → the function READY or FAILED; a function's code for tasks
``runs``                      a run message → StartTask, inputs, execution, outputs, CompleteTask or a failure
``reconciler``                re-queues stranded tasks, stops runs the ledger has ended
``failures``                  failure reports with their logs
``ledger`` · ``files``        clients of the ledger and of storage (and the cache they fill)
``remote``                    failed gRPC calls as the kit's domain errors
``executor``                  the executor interface; ``local_executor`` its warm runners in jails;
                              ``kubernetes/`` a pod per task and Kaniko image builds (ADR 0010)
``isolation`` · ``runner``    the bubblewrap jails and the program that runs first in each (ADR 0007)
``build``                     preparing a function's code and environment (the local stand-in for an image)
``store/`` · ``migrations/``  compute persists no table (see ``store``)
"""
