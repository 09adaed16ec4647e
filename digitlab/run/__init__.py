"""One run: its folder and the names of its files (layout, folder), a config prepared into objects (setup),
trained and recorded (lifecycle, callbacks, records, checkpoint), the outputs and the page made from its folder
(view, outputs, inside, page), and what is done with a finished run (predict, reproduce); lr_find is a short run
of its own. Light on purpose: importing a module of run/ loads only what that module needs."""
