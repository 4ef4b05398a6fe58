"""What a command does end to end: read inputs, run the methods, write outputs atomically.

* :mod:`gbm.jobs.forward`: ``gbm forward`` and ``gbm phase-field``;
* :mod:`gbm.jobs.fit`: ``gbm fit``, the patient fit (FD or PINN) with forecasts and plans;
* :mod:`gbm.jobs.synth`: ``gbm synth``, synthetic patients with known truth;
* :mod:`gbm.jobs.cohort`: ``gbm cohort``, one fit per patient on a local pool or Ray;
* :mod:`gbm.jobs.bench`: ``gbm bench``, the PINN-vs-FD studies.
"""
