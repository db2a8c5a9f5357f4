"""Tests of the Airflow provider (real Airflow 3.3, real fabrics)."""
