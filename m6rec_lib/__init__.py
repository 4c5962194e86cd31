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
- ``training``    device choice, the train loop, early stopping, checkpoints
- ``recording``   record a notebook's key metrics and read them back from an executed notebook
- ``course_runner`` the main job: execute every notebook (and build the book)
"""

__version__ = "0.1.0"
