"""Running imggen jobs from notebooks: the job panel, the parameters cell, and what a notebook shows.

Notebooks use these names only: :func:`run_in_notebook` (widgets in Jupyter, a blocking run under
papermill), :func:`notebook_path` and :func:`as_list` for the parameters cell, :class:`StatsTable`
and :func:`gallery_html` to show the results, and :func:`show_when_done` for the last cell.
"""

from .display import StatsTable, gallery_html
from .job import NotebookJob, RunEndedEarly, is_interactive_frontend, run_in_notebook
from .parameters import as_list, notebook_path
from .results import show_when_done

__all__ = ["NotebookJob", "RunEndedEarly", "StatsTable", "as_list", "gallery_html", "is_interactive_frontend",
           "notebook_path", "run_in_notebook", "show_when_done"]
