"""The scale-out show (issue 15): several worker processes on several "machines" (processes
here), one PostgreSQL, one Redis pacing budget, one broker; a shuffled load of many projects'
events with copies; then the facts that must hold. ``python -m tests.scale_show`` runs it at
full size; ``tests/e2e/test_scale_out.py`` runs it in the suite."""
