"""``headstudio batch``: many avatars on many GPUs.

A prompts file (:mod:`.items`) becomes one item per prompt; each item is trained by the
ordinary ``generate`` command (:mod:`headstudio.commands.generate`, given the item's
``GenerateOptions``, never argv) in its own process (started by :mod:`.launch`; it dies with its
parent, :mod:`.worker`), on a local pool of GPU slots (:mod:`.pool`) or as Ray tasks
(:mod:`.ray_backend`); :mod:`.runner` schedules, retries, reports and stops them cleanly.

This ``__init__`` imports nothing, so :mod:`.worker` stays a standard-library module.
"""
