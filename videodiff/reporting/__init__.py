"""The demo report's pieces: training curves read back from the run's logs."""
