"""Test support: tiny fake data sets and programs that tests run as processes."""
