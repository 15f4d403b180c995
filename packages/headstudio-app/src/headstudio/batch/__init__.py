"""``headstudio batch``: many avatars on many GPUs.

A prompts file (:mod:`.items`) becomes one item per prompt; each item is trained by the
ordinary ``headstudio generate`` command in its own process (:mod:`.worker`, started by
:mod:`.launch`), on a local pool of GPU slots (:mod:`.pool`) or as Ray tasks
(:mod:`.ray_backend`); :mod:`.runner` schedules, retries, reports and stops them cleanly.

This ``__init__`` imports nothing: ``python -m headstudio.batch.worker`` starts in a few
milliseconds, before it hands its process to ``headstudio generate``.
"""
