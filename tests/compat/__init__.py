"""Compatibility tests: real Kafka clients (confluent-kafka, aiokafka, kafka-python, kcat)
against a real broker process started by the fixtures in tests/conftest.py.

    pytest tests/compat                      # against kawa (python -m kawa up)
    pytest tests/compat -m 'not heavy'       # skip the 100k-record test
    KAWA_TEST_TARGET=tansu pytest tests/compat   # against tansu, to check the tests
"""
