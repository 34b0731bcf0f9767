"""The demo page's web layer: a FastAPI app over a `Songwriter`.

  GET  /             the page (demo_page.html): one static file, no template.
  GET  /api/facts    the run: step, valid bits/char, vocabulary size, and
                     the limits a request must keep.
  GET  /api/queue    ?ticket=T: where the request sent with ticket T stands
                     (waiting: position and wait estimate; running: share
                     done, compiling or not); `web_queue.WorkQueue.status`.
  GET  /loss.png     the run's loss curve (that one file; no client path).
  POST /api/write    `WriteRequest` -> the song: {seed, lines: [{text, end,
                     final, rhymes}], rhyme, figures}.
  POST /api/rewrite  `RewriteRequest` -> the song with line `index` written
                     anew (always a different line).

Every refusal is a JSON {"error": message} (and "field" when one field is
to blame): 422 a field out of its bounds or of the wrong type (the request
models below), 400 what the songwriter refuses (unknown characters, an
empty seed) and a body that is not JSON, 422 a request over the work budget
(characters x candidates), 503 a full queue or a stopping server; the
`web_guard.Guard` answers 400/403/413/415 before any route. A 500 is a bug.

Generation runs one request at a time (`web_queue.WorkQueue`, at most
`max_waiting` waiting); a request whose client disconnects is cancelled,
waiting or running (between device calls of `Plan.chunk` characters).
"""

import asyncio
import os
from typing import Annotated, Any, Callable, Hashable

import fastapi
from fastapi import exceptions
from fastapi import responses
import pydantic
from starlette.exceptions import HTTPException

from experiments import web_guard
from experiments import web_queue
from jaylyrics_jax.config import MAX_RNG_SEED
from jaylyrics_jax.config import MIN_TEMPERATURE
from jaylyrics_jax.config import SamplingConfig
from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.generation.songwriter import MAX_BEST_OF
from jaylyrics_jax.generation.songwriter import MAX_LINES
from jaylyrics_jax.generation.songwriter import MAX_TEMPERATURE
from jaylyrics_jax.generation.songwriter import Plan
from jaylyrics_jax.generation.songwriter import Songwriter

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                    'demo_page.html')
DEFAULTS = {'seed': '从前', 'lines': 8, 'rhyme': 'auto',
            'temperature': SamplingConfig.temperature, 'best_of': 1,
            'rng_seed': 0}
WORK_BUDGET = 8192  # Characters x candidates one request may draw.
MAX_SEED = 200  # Characters of a seed.
MAX_LINE = 200  # Characters of one kept line sent to /api/rewrite.
MAX_WAITING = 16
MAX_BODY = 64 * 1024
POLL_S = 0.25  # How often a waiting request checks its client is there.


def _no_bool(value: Any) -> Any:
  if isinstance(value, bool):
    raise ValueError('a number is needed, not true/false')
  return value


Whole = Annotated[int, pydantic.BeforeValidator(_no_bool)]
Number = Annotated[float, pydantic.BeforeValidator(_no_bool)]


class _Settings(pydantic.BaseModel):
  """The settings shared by writing and rewriting."""
  model_config = pydantic.ConfigDict(extra='forbid')
  seed: str = pydantic.Field(DEFAULTS['seed'], max_length=MAX_SEED)
  rhyme: str = pydantic.Field(DEFAULTS['rhyme'], max_length=32)
  temperature: Number = pydantic.Field(
      DEFAULTS['temperature'], ge=MIN_TEMPERATURE, le=MAX_TEMPERATURE,
      allow_inf_nan=False)
  best_of: Whole = pydantic.Field(DEFAULTS['best_of'], ge=1, le=MAX_BEST_OF)
  rng_seed: Whole = pydantic.Field(DEFAULTS['rng_seed'], ge=0,
                                   le=MAX_RNG_SEED)
  ticket: str | None = pydantic.Field(None, pattern=r'^[A-Za-z0-9_-]{1,40}$')


class WriteRequest(_Settings):
  """POST /api/write: a song of `lines` lines starting with `seed`."""
  lines: Whole = pydantic.Field(DEFAULTS['lines'], ge=1, le=MAX_LINES)


KeptLine = Annotated[str, pydantic.Field(min_length=1, max_length=MAX_LINE)]


class RewriteRequest(_Settings):
  """POST /api/rewrite: `lines` (the song's lines) with line `index` (from
  0) written anew."""
  lines: list[KeptLine] = pydantic.Field(min_length=1, max_length=MAX_LINES)
  index: Whole = pydantic.Field(ge=0, le=MAX_LINES - 1)


def _error(status: int, message: str, field: str | None = None,
           **headers: str) -> responses.JSONResponse:
  body = {'error': message}
  if field:
    body['field'] = field
  return responses.JSONResponse(body, status_code=status, headers=headers)


def _shown(value: Any) -> str:
  text = repr(value)
  return text if len(text) <= 40 else text[:24] + '…' + text[-8:]


def _validation_error(errors: list[dict[str, Any]]) -> responses.JSONResponse:
  """One message naming the field(s): 'lines should be ... (got 65).'"""
  messages, first = [], None
  for error in errors[:3]:
    loc = [str(part) for part in error.get('loc', ()) if part != 'body']
    if error.get('type') == 'json_invalid':
      return _error(400, 'The body is not valid JSON: '
                    f'{error.get("ctx", {}).get("error", "")}'.strip())
    if not loc or error.get('type') == 'model_attributes_type':
      return _error(422, 'Send a JSON object, e.g. {"seed": "从前", '
                    '"lines": 8}.')
    name = loc[0] if len(loc) == 1 else f'{loc[0]}[{loc[1]}]'
    first = first or loc[0]
    message = error.get('msg', 'is not valid')
    message = message.replace('Value error, ', '')
    if message.startswith('Input should'):
      message = message.replace('Input should', f'{name} should', 1)
    elif error.get('type') == 'missing':
      message = f'{name} is missing'
    else:
      message = f'{name}: {message}'
    if 'input' in error and error.get('type') != 'missing':
      message += f' (got {_shown(error["input"])})'
    messages.append(message)
  return _error(422, '; '.join(messages) + '.', first)


def _over_budget(plan: Plan, budget: int,
                 lines_field: str) -> responses.JSONResponse | None:
  if plan.work <= budget:
    return None
  return _error(
      422, f'Too much work for one request: {plan.length} characters x '
      f'{plan.rows} candidates = {plan.work:,} characters to draw, and this '
      f'server draws at most {budget:,} per request. Ask for fewer '
      f'{lines_field} or a smaller best of.', 'best_of')


def make_app(writer: Songwriter, workdir: str, hosts: tuple[str, ...] = (),
             work_budget: int = WORK_BUDGET, max_waiting: int = MAX_WAITING,
             compiled: tuple[Hashable, ...] = ()) -> fastapi.FastAPI:
  """The app; `workdir` is where loss.png is read from (nothing else).

  hosts: Host names accepted besides 127.0.0.1, localhost and ::1.
  compiled: request shapes (`shape_of`) already compiled, e.g. at start-up.
  The queue is `app.state.queue` (stop it to cancel every request).
  """
  app = fastapi.FastAPI(title='jaylyrics_jax', docs_url=None,
                        redoc_url=None, openapi_url=None)
  app.add_middleware(web_guard.Guard, hosts=web_guard.LOOPBACK + hosts,
                     max_body=MAX_BODY)
  queue = web_queue.WorkQueue(max_waiting, compiled)
  app.state.queue = queue
  app.router.add_event_handler('shutdown', queue.stop)
  with open(PAGE, encoding='utf-8') as f:
    page = f.read()

  @app.exception_handler(exceptions.RequestValidationError)
  async def invalid(request, error):
    del request
    return _validation_error(error.errors())

  @app.exception_handler(HTTPException)
  async def http_error(request, error):
    del request
    message = error.detail
    if error.status_code == 400:  # FastAPI's own: e.g. JSON nested too deep.
      message = f'The body could not be read as JSON ({error.detail}).'
    return _error(error.status_code, str(message))

  @app.exception_handler(JaylyricsError)
  async def refused(request, error):
    del request
    return _error(400, str(error))

  @app.exception_handler(web_queue.Busy)
  async def busy(request, error):
    del request
    return _error(503, str(error), **{'Retry-After': '30'})

  @app.exception_handler(web_queue.Cancelled)
  async def cancelled(request, error):
    del request
    return _error(503, str(error))

  async def run(request: fastapi.Request, ticket: str | None, plan: Plan,
                shape: Hashable, work: Callable[[Callable[[int], None]], Any]):
    job = queue.submit(web_queue.Job(work, plan.work, plan.length, shape,
                                     ticket))
    answer = asyncio.wrap_future(job.future)
    answer.add_done_callback(lambda f: f.cancelled() or f.exception())
    try:
      while not (await asyncio.wait({answer}, timeout=POLL_S))[0]:
        if await request.is_disconnected():
          queue.cancel(job, 'The client left.')
          return _error(499, 'The client left.')
    except asyncio.CancelledError:
      queue.cancel(job, 'The server is stopping.')
      raise
    return answer.result()

  @app.get('/', response_class=responses.HTMLResponse)
  def index():
    return page

  @app.get('/api/facts')
  def facts():
    return dict(writer.facts(), work_budget=work_budget,
                max_lines=MAX_LINES, max_best_of=MAX_BEST_OF,
                max_rng_seed=MAX_RNG_SEED,
                temperature=[MIN_TEMPERATURE, MAX_TEMPERATURE])

  @app.get('/api/queue')
  def queue_status(ticket: str | None = None):
    return queue.status(ticket)

  @app.get('/loss.png')
  def loss_png():
    path = os.path.join(workdir, 'loss.png')
    if not os.path.exists(path):
      raise fastapi.HTTPException(404, 'No loss curve in this run.')
    return responses.FileResponse(path, media_type='image/png')

  async def serve(request, body, plan: Plan, counted: str, song):
    """Checks the rhyme and the work budget (`counted`: what the plan's
    lines are, for the error), then runs song(rhyme, on_chunk) queued."""
    rhyme = body.rhyme.strip() or 'auto'
    SamplingConfig(rhyme=rhyme)  # Raises for what is not a rhyme.
    over = _over_budget(plan, work_budget, counted)
    if over:
      return over
    return await run(request, body.ticket, plan, shape_of(plan, body.rhyme),
                     lambda on_chunk: song(rhyme, on_chunk).to_dict())

  @app.post('/api/write')
  async def write(body: WriteRequest, request: fastapi.Request):
    plan = writer.plan_write(body.seed, body.lines, body.best_of,
                             body.temperature, body.rng_seed)
    return await serve(request, body, plan, 'lines', lambda rhyme, on_chunk:
                       writer.write(body.seed, body.lines, rhyme,
                                    body.temperature, body.best_of,
                                    body.rng_seed, on_chunk))

  @app.post('/api/rewrite')
  async def rewrite(body: RewriteRequest, request: fastapi.Request):
    plan = writer.plan_rewrite(body.lines, body.index, body.seed,
                               body.best_of, body.temperature, body.rng_seed)
    return await serve(request, body, plan, 'lines above the one rewritten',
                       lambda rhyme, on_chunk: writer.rewrite_line(
                           body.lines, body.index, body.seed, rhyme,
                           body.temperature, body.best_of, body.rng_seed,
                           on_chunk))

  return app


def shape_of(plan: Plan, rhyme: str) -> Hashable:
  """What one compiled program serves: the plan, and rhyme on or off."""
  return (plan, rhyme.strip() == 'none')
