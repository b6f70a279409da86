"""Tests of the host capabilities, one folder per unit (mirrors host_api/)."""
