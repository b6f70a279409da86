"""The queue benchmark's baselines: Dramatiq, SAQ, arq and RQ doing the same no-op workload.

Each module (``dramatiq_q``, ``saq_q``, ``arq_q``, ``rq_q``) offers the same
two functions, both used with a key prefix of their own on the same Redis:

* ``enqueue(url, prefix, n) -> float``: enqueue ``n`` no-op jobs one by one
  with the library's ordinary client in this process; seconds taken
  (connection setup excluded).
* ``work(url, prefix, concurrency, tally, **options)``: run one worker of the
  library in this process on those jobs. Its job function only calls
  ``tally.hit()``, which records the first job's start and the last job's end;
  ``worker.py`` ends the process once the tally reaches ``n``.

``arcana_q`` runs the same workload through Arcana; ``bench/queue_bench.py`` drives them all.
"""
