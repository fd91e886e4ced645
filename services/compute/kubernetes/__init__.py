"""The Kubernetes executor (``TESSERA_EXECUTOR=kubernetes``, ADR 0010): a pod per task, a Kaniko Job
per function image, in compute's namespace, for its organization only.

``specs``      the objects compute creates (task pods, build Jobs, the deny-all NetworkPolicy), as data
``rules``      pod status → a task's result, Job status → a build's, what the reaper removes (pure)
``api``        the calls to the API server (official client, in threads), errors as the kit's
``watch``      following pods and Jobs with the API's watch, in a thread, and waiting on one of them
``executor``   :class:`~.executor.KubernetesExecutor` (staging, pods, outputs) and its reaper
``images``     function images: the archive unpacked as a build context, the Kaniko Job, its log
"""
