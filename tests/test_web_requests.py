"""The demo page's JSON API as a product: every bad request gets a 4xx that
names the problem (never a 5xx), the server is safe on localhost, and the
queue keeps one request from holding up the others. A tiny untrained model;
all requests go to 127.0.0.1 only, and every wait is bounded."""

import http.client
import json
import re
import socket
import threading
import time

import pytest

from conftest import tiny_songwriter

pytest.importorskip('fastapi', reason="pip install -e '.[demo]'")
# pylint: disable=g-import-not-at-top,wrong-import-position
from fastapi.testclient import TestClient
from experiments import web_app
from experiments import web_queue
from jaylyrics_jax.config import SamplingConfig
# pylint: enable=g-import-not-at-top,wrong-import-position

BIG = '9' * 400  # A 400-digit integer, as raw JSON.


@pytest.fixture(scope='module')
def writer():
  return tiny_songwriter()


@pytest.fixture(scope='module')
def client(writer):
  with TestClient(web_app.make_app(writer, '/nonexistent'),
                  base_url='http://127.0.0.1:8000') as c:
    yield c


def _post(client, path, raw, **headers):
  headers.setdefault('content-type', 'application/json')
  return client.post(path, content=raw.encode('utf-8'), headers=headers)


def test_the_api_writes_and_rewrites(client, writer):
  page = client.get('/')
  assert page.status_code == 200 and '<meta charset="utf-8">' in page.text
  facts = client.get('/api/facts').json()
  assert facts['step'] == 7 and facts['vocab_size'] == writer.model.vocab.size
  assert facts['valid_bpc'] == pytest.approx(3.0 / 0.6931471805599453)
  assert facts['work_budget'] == web_app.WORK_BUDGET
  assert client.get('/loss.png').status_code == 404
  ok = client.post('/api/write', json={'seed': '春', 'lines': 3,
                                       'rng_seed': 1}).json()
  assert len(ok['lines']) == 3 and ok['lines'][0]['text'].startswith('春')
  assert ok == writer.write('春', 3, rng_seed=1).to_dict()
  # The page sends its inputs as text: numbers in strings are numbers.
  assert client.post('/api/write', json={
      'seed': '春', 'lines': '3',
      'temperature': str(web_app.DEFAULTS['temperature']), 'best_of': '1',
      'rng_seed': '1'}).json() == ok
  texts = [line['text'] for line in ok['lines']]
  new = client.post('/api/rewrite', json={'lines': texts, 'index': 1,
                                          'seed': '春', 'rng_seed': 9}).json()
  assert [new['lines'][i]['text'] for i in (0, 2)] == [texts[0], texts[2]]
  assert new['lines'][1]['text'] != texts[1]


@pytest.mark.parametrize('path, raw, field', [
    # Numbers that overflowed a float or an int (were 500s).
    ('/api/write', '{"seed": "春", "lines": 1e400}', 'lines'),
    ('/api/write', '{"seed": "春", "lines": Infinity}', 'lines'),
    ('/api/write', f'{{"seed": "春", "lines": {BIG}}}', 'lines'),
    ('/api/write', '{"seed": "春", "best_of": 1e400}', 'best_of'),
    ('/api/write', '{"seed": "春", "best_of": -Infinity}', 'best_of'),
    ('/api/write', f'{{"seed": "春", "best_of": {BIG}}}', 'best_of'),
    ('/api/write', '{"seed": "春", "rng_seed": 1e400}', 'rng_seed'),
    ('/api/write', '{"seed": "春", "rng_seed": Infinity}', 'rng_seed'),
    ('/api/write', f'{{"seed": "春", "rng_seed": {BIG}}}', 'rng_seed'),
    ('/api/write', '{"seed": "春", "rng_seed": 9223372036854775808}',
     'rng_seed'),
    ('/api/write', '{"seed": "春", "rng_seed": 18446744073709551616}',
     'rng_seed'),
    ('/api/write', '{"seed": "春", "rng_seed": 99999999999999999999}',
     'rng_seed'),
    ('/api/write', '{"seed": "春", "rng_seed": -1}', 'rng_seed'),
    ('/api/rewrite', '{"lines": ["春天"], "index": 1e400}', 'index'),
    ('/api/rewrite', '{"lines": ["春天"], "index": Infinity}', 'index'),
    ('/api/rewrite', f'{{"lines": ["春天"], "index": {BIG}}}', 'index'),
    # Temperatures whose logits overflow (were 500s), and non-numbers.
    ('/api/write', '{"seed": "春", "temperature": 1e-40}', 'temperature'),
    ('/api/write', '{"seed": "春", "temperature": 0}', 'temperature'),
    ('/api/write', '{"seed": "春", "temperature": NaN}', 'temperature'),
    ('/api/write', '{"seed": "春", "temperature": 1e38}', 'temperature'),
    ('/api/write', '{"seed": "春", "temperature": "hot"}', 'temperature'),
    # Wrong types, and fields the API does not have.
    ('/api/write', '{"seed": "春", "lines": "abc"}', 'lines'),
    ('/api/write', '{"seed": "春", "lines": 2.5}', 'lines'),
    ('/api/write', '{"seed": "春", "lines": true}', 'lines'),
    ('/api/write', '{"seed": 5}', 'seed'),
    ('/api/write', '{"seed": "春", "line": 3}', 'line'),
    ('/api/write', '{"seed": "春", "lines": 65}', 'lines'),
    ('/api/write', '{"seed": "春", "best_of": 65}', 'best_of'),
    # Kept lines: at most the page's 64, each bounded.
    ('/api/rewrite', json.dumps({'lines': ['春'] * 65, 'index': 0}),
     'lines'),
    ('/api/rewrite', json.dumps({'lines': ['春' * 201], 'index': 0}),
     'lines'),
    ('/api/rewrite', json.dumps({'lines': [''], 'index': 0}), 'lines'),
    ('/api/rewrite', '{"lines": "春天", "index": 0}', 'lines'),
    ('/api/rewrite', '{"lines": ["春天"]}', 'index'),
])
def test_bad_fields_are_422_naming_the_field(client, path, raw, field):
  res = _post(client, path, raw)
  assert res.status_code == 422, res.text
  body = res.json()
  assert body['field'] == field and body['error'].startswith(field), body


def test_large_seeds_name_the_range_not_a_whole_number(client):
  res = _post(client, '/api/write',
              '{"seed": "春", "rng_seed": 99999999999999999999}')
  assert '4294967295' in res.json()['error']
  assert 'whole number' not in res.json()['error']


@pytest.mark.parametrize('path, body, status, message', [
    ('/api/write', {'seed': '晴', 'lines': 3}, 400, "'晴'"),
    ('/api/write', {'seed': '', 'lines': 3}, 400, 'empty'),
    ('/api/write', {'seed': ' ' * 100, 'lines': 1}, 400, 'empty'),
    ('/api/write', {'seed': '春' + ' ' * 100 + '天', 'lines': 1}, 400,
     'seed holds 2 lines'),
    ('/api/write', {'seed': '春', 'rhyme': 'xyz'}, 400, "rhyme='xyz'"),
    ('/api/write', [1, 2], 422, 'JSON object'),
    ('/api/rewrite', {'lines': ['春天', '夏😀'], 'index': 0, 'seed': '春'},
     400, "song's lines"),
    ('/api/rewrite', {'lines': ['春天', '夏'], 'index': 2, 'seed': '春'}, 400,
     'index=2'),
])
def test_what_the_songwriter_refuses_is_a_400(client, path, body, status,
                                              message):
  res = client.post(path, json=body)
  assert res.status_code == status and message in res.json()['error'], (
      res.text)
  assert 'seed' not in res.json()['error'] or path == '/api/write'


def test_a_request_over_the_work_budget_is_refused(client):
  res = client.post('/api/write', json={'seed': '春', 'lines': 64,
                                        'best_of': 64})
  assert res.status_code == 422 and res.json()['field'] == 'best_of'
  assert 'Too much work' in res.json()['error']
  assert f'{web_app.WORK_BUDGET:,}' in res.json()['error']


def test_body_cap_and_nesting(client):
  deep = '[' * 100_000 + ']' * 100_000
  assert _post(client, '/api/write', deep).status_code == 413
  res = _post(client, '/api/write', '{"seed": ' + '[' * 20_000 + ']' * 20_000
              + '}')
  assert res.status_code == 400 and 'JSON' in res.json()['error']
  kept = json.dumps({'lines': ['从前'] * 330_000, 'index': 0, 'seed': '春'})
  res = _post(client, '/api/rewrite', kept)
  assert res.status_code == 413 and '64 KB' in res.json()['error']
  # Without a Content-Length (chunked): read to the cap, then refused.
  res = client.post('/api/write', headers={'content-type': 'application/json'},
                    content=(b'x' * 1024 for _ in range(100)))
  assert res.status_code == 413
  assert _post(client, '/api/write', 'not json').status_code == 400


def test_host_origin_and_content_type(client):
  write = '{"seed": "春", "lines": 2}'
  res = _post(client, '/api/write', write, host='evil.example')
  assert res.status_code == 400 and 'evil.example' in res.json()['error']
  assert client.get('/', headers={'host': 'evil.example:8000'}
                    ).status_code == 400
  res = _post(client, '/api/write', write, origin='http://evil.example')
  assert res.status_code == 403
  res = _post(client, '/api/write', write, **{'content-type': 'text/plain'})
  assert res.status_code == 415  # What a cross-site form can send.
  for host in ('127.0.0.1:8000', 'localhost:8000', '[::1]:8000'):
    res = _post(client, '/api/write', write, host=host,
                origin=f'http://{host}')
    assert res.status_code == 200, (host, res.text)


def test_server_keeps_serving_after_errors(client):
  for raw in ('{"lines": 1e400}', '{"rng_seed": 18446744073709551616}',
              '[' * 1000, '{"temperature": 1e-40}'):
    assert _post(client, '/api/write', raw).status_code < 500
  assert client.post('/api/write', json={'seed': '春'}).status_code == 200


# The queue, with jobs that wait on an event: a job is any callable.

def _blocking_job(gate, shape='blocker', started=None):
  def run(on_chunk):
    if started is not None:
      started.set()
    for done in range(1000):
      if gate.wait(0.01):
        return 'released'
      on_chunk(done)  # Raises Cancelled once the job is cancelled.
    raise AssertionError('never released')
  return web_queue.Job(run, work=100, length=1000, shape=shape)


def test_queue_positions_busy_and_cancel():
  queue = web_queue.WorkQueue(max_waiting=2)
  gate, started = threading.Event(), threading.Event()
  first = _blocking_job(gate, started=started)
  first.ticket = 'a'
  queue.submit(first)
  assert started.wait(10)
  # Its shape never ran: the page says it compiles.
  assert queue.status('a')['state'] == 'running'
  assert queue.status('a')['compiling']
  ran = []
  second = queue.submit(web_queue.Job(lambda on_chunk: ran.append(2), 10, 1,
                                      'small', ticket='b'))
  third = queue.submit(web_queue.Job(lambda on_chunk: ran.append(3), 10, 1,
                                     'small', ticket='c'))
  assert queue.status('c')['state'] == 'waiting'
  assert queue.status('c')['position'] == 2
  with pytest.raises(web_queue.Busy, match='busy'):
    queue.submit(web_queue.Job(lambda on_chunk: None, 1, 1, 'small'))
  queue.cancel(second)  # Its client left: it never runs.
  with pytest.raises(web_queue.Cancelled):
    second.future.result(timeout=1)
  assert queue.status('c')['position'] == 1
  gate.set()
  assert first.future.result(timeout=10) == 'released'
  assert third.future.result(timeout=10) is None and ran == [3]
  assert queue.seconds_per_char is None  # Both shapes ran for the first time.
  queue.stop()


def test_queue_cancels_a_running_job_between_chunks_and_on_stop():
  queue = web_queue.WorkQueue(max_waiting=4)
  gate, started = threading.Event(), threading.Event()
  running = queue.submit(_blocking_job(gate, started=started))
  assert started.wait(10)
  queue.cancel(running)
  with pytest.raises(web_queue.Cancelled):
    running.future.result(timeout=1)  # Answered at once.
  deadline = time.monotonic() + 5  # And the device is free again soon.
  while queue.status()['running'] and time.monotonic() < deadline:
    time.sleep(0.01)
  assert not queue.status()['running']
  started.clear()
  again = queue.submit(_blocking_job(gate, 'blocker', started))
  assert started.wait(10)
  waiting = queue.submit(_blocking_job(gate, 'other'))
  assert queue.status()['waiting'] == 1
  start = time.monotonic()
  queue.stop()
  for job in (again, waiting):
    with pytest.raises(web_queue.Cancelled, match='stopping'):
      job.future.result(timeout=1)
  assert time.monotonic() - start < 1
  with pytest.raises(web_queue.Cancelled):
    queue.submit(_blocking_job(gate))


def test_queue_estimates_the_wait_from_finished_jobs():
  queue = web_queue.WorkQueue(max_waiting=4, compiled=('small',))
  queue.submit(web_queue.Job(lambda on_chunk: time.sleep(0.05), 100, 1,
                             'small')).future.result(timeout=10)
  assert queue.seconds_per_char > 0
  gate, started = threading.Event(), threading.Event()
  first = queue.submit(_blocking_job(gate, 'small', started))
  assert started.wait(10)
  queue.submit(web_queue.Job(lambda on_chunk: None, 100, 1, 'small',
                             ticket='w'))
  status = queue.status('w')
  assert status['state'] == 'waiting' and status['position'] == 1
  assert status['wait_s'] > 0
  gate.set()
  first.future.result(timeout=10)
  queue.stop()


# The real server on a free localhost port, in this process.

def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.fixture
def served(writer):
  import uvicorn  # pylint: disable=g-import-not-at-top
  app = web_app.make_app(writer, '/nonexistent', max_waiting=2)
  port = _free_port()
  server = uvicorn.Server(uvicorn.Config(app, host='127.0.0.1', port=port,
                                         log_level='warning'))
  thread = threading.Thread(target=server.run, daemon=True)
  thread.start()
  deadline = time.monotonic() + 30
  while not server.started and time.monotonic() < deadline:
    time.sleep(0.05)
  assert server.started
  yield app, port
  app.state.queue.stop()
  server.should_exit = True
  thread.join(10)


def _send(port, body, timeout=30):
  conn = http.client.HTTPConnection('127.0.0.1', port, timeout=timeout)
  conn.request('POST', '/api/write', body=json.dumps(body),
               headers={'Content-Type': 'application/json'})
  res = conn.getresponse()
  return res.status, json.loads(res.read())


def test_a_client_that_leaves_is_cancelled_and_a_full_queue_is_503(served):
  app, port = served
  queue = app.state.queue
  gate, started = threading.Event(), threading.Event()
  blocker = queue.submit(_blocking_job(gate, started=started))
  assert started.wait(10)
  # It waits behind the blocker; its client gives up after half a second.
  with pytest.raises(TimeoutError):
    _send(port, {'seed': '春', 'lines': 2, 'ticket': 'gone'}, timeout=0.5)
  deadline = time.monotonic() + 5
  while queue.status()['waiting'] and time.monotonic() < deadline:
    time.sleep(0.05)
  assert queue.status()['waiting'] == 0  # Taken out of the queue.
  # Two wait (the most); the next is refused at once, not held up.
  waiting = [queue.submit(_blocking_job(gate, 'other')) for _ in range(2)]
  start = time.monotonic()
  status, body = _send(port, {'seed': '春', 'lines': 2})
  assert status == 503 and 'busy' in body['error']
  assert time.monotonic() - start < 5
  for job in waiting:
    queue.cancel(job)
  gate.set()
  blocker.future.result(timeout=10)
  status, body = _send(port, {'seed': '春', 'lines': 2})
  assert status == 200 and len(body['lines']) == 2


def test_concurrent_writes_all_answered(served):
  _, port = served
  results = []

  def one(i):
    results.append(_send(port, {'seed': '春', 'lines': 2, 'rng_seed': i},
                         timeout=60)[0])

  threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(90)
  assert len(results) == 12
  assert set(results) <= {200, 503} and results.count(200) >= 3, results


def test_the_page_starts_at_the_library_default_temperature():
  # The page is one static file: its field repeats SamplingConfig's value.
  with open(web_app.PAGE, encoding='utf-8') as f:
    field = re.search(r'<input id="temperature" value="([^"]+)"', f.read())
  assert float(field.group(1)) == SamplingConfig.temperature
