"""Every matplotlib figure, one module per subject (run, inside, data, compare), and the HTML blocks of the pages."""
