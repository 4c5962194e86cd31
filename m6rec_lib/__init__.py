"""m6rec_lib: the helper library of the course *Generative-pretrained, open-ended recommendation,
built from scratch*.

The library is the course's memory: a notebook builds a thing from scratch to teach it, then
switches to the version kept here. One concept per module:

- ``config``      where things live (datasets, cache, run outputs) and the run mode (full/smoke)
- ``atomic``      write files atomically, so that nothing is left half-written
- ``seeding``     one function that seeds every random generator the course uses
- ``data``        the bundled Online Retail II data, cleaning, item indexing, splits, evaluation
                  sets and their validation halves, sequences, descriptions of the data, MovieLens
                  downloads and the seed article's toy world
- ``metrics``     full-catalogue ranking metrics, per-customer values, bootstrap intervals and
                  paired comparisons (``paired_bootstrap``, ``paired_bootstrap_auc``)
- ``baselines``   MostPop, Buy-Again, ItemKNN, co-occurrence, iALS, EASE, BPR and their grids
- ``losses``      log-sum-exp, softmax cross-entropy and its gradient, sampled softmax, BPR
- ``models``      one readable file per model (matrix factorisation, the GPT, SASRec, two-tower)
- ``text``        behaviour written as text (serializer) and its tokenizer
- ``pretraining`` generative pretraining of the GPT on behaviour text (year-1 and main stages)
- ``text_scorer`` zero-shot scoring of products by the language model's likelihood of their text
- ``contrastive``, ``augment``  InfoNCE, alignment/uniformity, sequence augmentations
- ``mixture``     a next-item model mixed with repeat purchases
- ``adaptation``, ``click_task``  prompt/option tuning, adapters, and the tasks they learn
- ``sentence_encoder``, ``generation``  an offline pretrained text encoder; decoding and its metrics
- ``semantic_ids`` residual k-means codes of products and generative retrieval over them
- ``cold_start``  evaluating products never sold in training fairly (only what was on sale)
- ``serving``     cheaper inference, one module per idea (late interaction, early exit, sharing,
                  pruning, int8, distillation, latency)
- ``new_products``, ``text_retrieval``, ``reranking``, ``segments``, ``recommender``
                  the full recommender: a catalogue with new products, their text path, an
                  adapted-LM re-ranker, evaluation by segment, and ``recommend(customer, k)``
- ``byod``        bring your own data: any (user, item, time) table through the course's protocol
- ``training``    device choice, the train loop, early stopping, checkpoints keyed by code version
- ``recording``   record a notebook's key metrics and comparisons; read them back
- ``expected``    the numbers a full or smoke run should give, and the check against them
- ``published``   published figures the course may cite, with their source and protocol
- ``diagrams``    the course's figures, drawn in code
- ``course_runner`` the main job: execute every notebook, then build the book (``book``,
                  ``site_markdown``, ``instructor``, ``sections``); ``student_copies`` writes
                  learners' copies without solutions
"""

__version__ = "0.1.0"
