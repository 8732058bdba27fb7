"""`bertforge glue`: the GLUE benchmark from its official files, with seeds, medians, the GLUE score and a
submission for the leaderboard. ``layout`` reads and checks the files, ``recipes`` says how each task is
fine-tuned, ``run`` runs the task x seed cells through the fine-tuning library, ``score``, ``report`` and
``submission`` write what a paper and the GLUE server want."""
