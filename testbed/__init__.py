"""What the tests and the benchmark share, and nothing the service runs.

- `testbed.events`: contract events and seeded streams (the benchmark's and the fault suite's);
- `testbed.model`, `testbed.oracle`: the independent model of the contract (imports nothing
  from `service`) and the expected outcome of a stream, compared with a table;
- `testbed.publish`: the one way both publish: an idempotent producer, so a retry can never
  reorder a key's records;
- `testbed.environment`: a child process's environment from the service's settings;
- `testbed.run_database`: a database of one run's own, dropped once the run succeeded;
- `testbed.write_path`, `testbed.fake_consumer`: the write path's surroundings without Kafka
  (an in-memory dead-letter sink, the production guard on a stand-in consumer), for the write
  path's tests and the benchmark's write-only mode.

`tests/` and `bench/` import from here; `bench/` never imports `tests/`.
"""
