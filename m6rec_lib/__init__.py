"""m6rec_lib: the helper library of the course *Generative-pretrained, open-ended recommendation,
built from scratch*.

The library is the course's memory: a notebook builds a thing from scratch to teach it, then
switches to the version kept here. One concept per module:

- ``config``      where things live (datasets, cache, run outputs) and the run mode (full/smoke)
- ``atomic``      write files atomically, so that nothing is left half-written
- ``seeding``     one function that seeds every random generator the course uses
- ``data``        the bundled Online Retail II data, cleaning, item indexing, splits, sequences,
                  MovieLens downloads and the seeded toy world
- ``metrics``     full-catalogue ranking metrics and the batched evaluator
- ``baselines``   MostPop, Buy-Again, ItemKNN, co-occurrence, iALS, EASE
- ``losses``      log-sum-exp, softmax cross-entropy and its gradient, sampled softmax, BPR
- ``models``      one readable file per model (matrix factorisation, the GPT, ...)
- ``text``        behaviour written as text (serializer) and its tokenizer
- ``pretraining`` generative pretraining of the GPT on year-1 behaviour text, cached by config
- ``contrastive``, ``augment``  InfoNCE, alignment/uniformity, sequence augmentations
- ``adaptation``, ``click_task``  prompt/option tuning, adapters, and the tasks they learn
- ``sentence_encoder``, ``generation``  an offline pretrained text encoder; decoding and its metrics
- ``cold_start``  evaluating products never sold in training fairly (only what was on sale)
- ``serving``, ``recommender``  cheaper inference, and the full recommender
- ``training``    device choice, the train loop, early stopping, checkpoints
- ``recording``   record a notebook's key metrics and read them back from an executed notebook
- ``course_runner`` the main job: execute every notebook, then build the book (``book``)
"""

__version__ = "0.1.0"
