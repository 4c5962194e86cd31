"""Models, one readable file each (import them by module: ``from m6rec_lib.models.gpt import GPT``)."""
