"""One run function per command (``run_train``, ``run_eval``, ``run_serve``, ...): typed config in, result out. The
CLI (:mod:`rewardlab.cli`) parses arguments and calls them; ``recipes.demos`` holds the offline demos."""
