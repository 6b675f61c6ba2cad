"""Reports of a stored run: ``html.render(store, run_id)`` writes one self-contained HTML file."""
