"""The demo page's web layer: a FastAPI app over a `Songwriter`.

  GET  /             the page (demo_page.html): one static file, no template.
  GET  /api/facts    the run: step, valid bits/char, vocabulary size.
  GET  /loss.png     the run's loss curve (that one file; no client path).
  POST /api/write    {seed, lines, rhyme, temperature, best_of, rng_seed}
                     -> the song: {seed, lines: [{text, end, final, rhymes}],
                     rhyme, figures}.
  POST /api/rewrite  {lines: [...], index, seed, rhyme, temperature, best_of,
                     rng_seed} -> the song with line `index` written anew.

A bad request (unknown characters, an empty seed, values out of range or not
numbers) answers HTTP 400 {"error": message}; any other failure 500 with its
message, and the server keeps serving. Generation runs one request at a time
(a lock around the device); the page and the facts never wait for it.
"""

import math
import os
import threading
from typing import Any

import fastapi
from fastapi import responses
from fastapi.concurrency import run_in_threadpool

from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.generation.songwriter import Songwriter

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                    'demo_page.html')
DEFAULTS = {'seed': '从前', 'lines': 8, 'rhyme': 'auto', 'temperature': 0.6,
            'best_of': 1, 'rng_seed': 0}


def _number(body: dict[str, Any], name: str, kind: type) -> Any:
  value = body.get(name, DEFAULTS.get(name))
  if isinstance(value, bool):
    raise JaylyricsError(f'{name} must be a number, got {value!r}.')
  try:
    number = kind(value)
  except (TypeError, ValueError):
    raise JaylyricsError(f'{name} must be a {"whole " if kind is int else ""}'
                         f'number, got {value!r}.') from None
  if kind is int and float(value) != number:
    raise JaylyricsError(f'{name} must be a whole number, got {value!r}.')
  if kind is float and not math.isfinite(number):
    raise JaylyricsError(f'{name} must be a finite number, got {value!r}.')
  return number


def _text(body: dict[str, Any], name: str) -> str:
  value = body.get(name, DEFAULTS.get(name))
  if not isinstance(value, str):
    raise JaylyricsError(f'{name} must be text, got {value!r}.')
  return value


def _settings(body: dict[str, Any]) -> dict[str, Any]:
  return {'rhyme_choice': _text(body, 'rhyme').strip() or 'auto',
          'temperature': _number(body, 'temperature', float),
          'best_of': _number(body, 'best_of', int),
          'rng_seed': _number(body, 'rng_seed', int)}


def make_app(writer: Songwriter, workdir: str) -> fastapi.FastAPI:
  """The app; `workdir` is where loss.png is read from (nothing else)."""
  app = fastapi.FastAPI(title='jaylyrics_jax', docs_url=None,
                        redoc_url=None, openapi_url=None)
  device = threading.Lock()
  with open(PAGE, encoding='utf-8') as f:
    page = f.read()

  def answer(work):
    try:
      with device:
        return work().to_dict()
    except JaylyricsError as e:
      return responses.JSONResponse({'error': str(e)}, status_code=400)
    except Exception as e:  # pylint: disable=broad-except
      return responses.JSONResponse(
          {'error': f'{type(e).__name__}: {e}'}, status_code=500)

  async def body_of(request: fastapi.Request) -> dict[str, Any]:
    try:
      body = await request.json()
    except ValueError:
      body = None
    if not isinstance(body, dict):
      raise JaylyricsError('Send a JSON object, e.g. {"seed": "从前", '
                           '"lines": 8}.')
    return body

  @app.get('/', response_class=responses.HTMLResponse)
  def index():
    return page

  @app.get('/api/facts')
  def facts():
    return writer.facts()

  @app.get('/loss.png')
  def loss_png():
    path = os.path.join(workdir, 'loss.png')
    if not os.path.exists(path):
      raise fastapi.HTTPException(404, 'No loss curve in this run.')
    return responses.FileResponse(path, media_type='image/png')

  @app.post('/api/write')
  async def write(request: fastapi.Request):
    try:
      body = await body_of(request)
      seed, lines = _text(body, 'seed'), _number(body, 'lines', int)
      settings = _settings(body)
    except JaylyricsError as e:
      return responses.JSONResponse({'error': str(e)}, status_code=400)
    return await run_in_threadpool(
        answer, lambda: writer.write(seed, lines, **settings))

  @app.post('/api/rewrite')
  async def rewrite(request: fastapi.Request):
    try:
      body = await body_of(request)
      lines = body.get('lines')
      if not isinstance(lines, list) or not all(
          isinstance(t, str) for t in lines):
        raise JaylyricsError('lines must be a list of the song\'s lines.')
      index = _number(body, 'index', int) if 'index' in body else None
      if index is None:
        raise JaylyricsError('index (the line to rewrite, from 0) is missing.')
      seed = _text(body, 'seed')
      settings = _settings(body)
    except JaylyricsError as e:
      return responses.JSONResponse({'error': str(e)}, status_code=400)
    return await run_in_threadpool(
        answer, lambda: writer.rewrite_line(lines, index, seed, **settings))

  return app
