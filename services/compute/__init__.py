"""The compute service: builds functions and runs tasks for one organization."""
