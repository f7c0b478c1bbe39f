"""Downstream evaluation of model folders: the evaluate stage's tasks."""
