"""`digitlab dashboard`: a local web server over run folders that shows every run and sweep live in the browser.
state.py keeps the runs' rows current, api.py builds the JSON the pages ask for, server.py serves it (and the files
of the run folders, and nothing else), stop.py stops a run when --allow-stop says so; static/ holds the pages."""
