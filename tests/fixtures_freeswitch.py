"""Fixtures around the test FreeSWITCH (owned by the ESL side)."""
