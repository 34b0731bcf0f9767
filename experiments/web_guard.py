"""What a local web server checks before any route sees a request.

`Guard` is ASGI middleware that answers, with a JSON {"error": message}:
  400  a `Host` header that is not one of the names the server was started
       for (a web page the user visits cannot reach it through a DNS name
       of its own: DNS rebinding);
  403  a POST whose `Origin` is another site (a cross-site form or fetch);
  415  a POST that is not JSON (the only kind a cross-site form can send
       without asking the server first);
  413  a body over `max_body` bytes, whether it says its length or not
       (it is read at most that far, then refused).
Everything else passes through, the body replayed to the app.
"""

import json
from typing import Any, Awaitable, Callable, Iterable
from urllib.parse import urlsplit

LOOPBACK = ('127.0.0.1', 'localhost', '::1')
WILDCARDS = ('0.0.0.0', '::', '')


def is_loopback(host: str) -> bool:
  """Whether binding to `host` keeps the server on this machine."""
  return host in LOOPBACK or host.startswith('127.')


def host_name(header: str) -> str:
  """'Host' header -> the name alone: 'a.b:8000' -> 'a.b', '[::1]:80' ->
  '::1' (lower case)."""
  header = header.strip().lower()
  if header.startswith('['):
    return header[1:header.find(']')] if ']' in header else header
  return header.rsplit(':', 1)[0] if header.count(':') == 1 else header


async def _answer(send, status: int, message: str):
  body = json.dumps({'error': message}, ensure_ascii=False).encode('utf-8')
  await send({'type': 'http.response.start', 'status': status,
              'headers': [(b'content-type', b'application/json'),
                          (b'content-length', str(len(body)).encode())]})
  await send({'type': 'http.response.body', 'body': body})


class Guard:
  """ASGI middleware: Host, Origin, content type and body size (module
  doc). `hosts`: the names accepted in the Host header."""

  def __init__(self, app: Callable[..., Awaitable[None]],
               hosts: Iterable[str], max_body: int = 64 * 1024):
    self.app = app
    self.hosts = {h.lower().strip('[]') for h in hosts}
    self.max_body = max_body

  def _refusal(self, method: str,
               headers: dict[str, str]) -> tuple[int, str] | None:
    host = headers.get('host', '')
    if host_name(host) not in self.hosts:
      return 400, (f'This server answers to {", ".join(sorted(self.hosts))}, '
                   f'not to Host: {host[:60]!r}. Open it by one of those '
                   'names (serve --allowed_hosts adds more).')
    if method in ('GET', 'HEAD', 'OPTIONS'):
      return None
    origin = headers.get('origin')
    if origin is not None and urlsplit(origin).netloc.lower() != host.lower():
      return 403, (f'Requests from another site ({origin[:60]}) are '
                   'refused: use the page this server serves.')
    if headers.get('sec-fetch-site') == 'cross-site':
      return 403, 'Requests from another site are refused.'
    kind = headers.get('content-type', '').split(';')[0].strip().lower()
    if kind != 'application/json':
      return 415, ('Send the request as JSON (Content-Type: '
                   'application/json), e.g. {"seed": "从前", "lines": 8}.')
    length = headers.get('content-length')
    if length is not None and (not length.isdigit()
                               or int(length) > self.max_body):
      return 413, self._too_big()
    return None

  def _too_big(self) -> str:
    return (f'The request is over {self.max_body // 1024} KB: send at most '
            f'{self.max_body} bytes.')

  async def __call__(self, scope: dict[str, Any], receive, send):
    if scope['type'] != 'http':
      await self.app(scope, receive, send)
      return
    headers = {k.decode('latin-1').lower(): v.decode('latin-1')
               for k, v in scope['headers']}
    refusal = self._refusal(scope['method'], headers)
    if refusal:
      await _answer(send, *refusal)
      return
    if scope['method'] in ('GET', 'HEAD', 'OPTIONS'):
      await self.app(scope, receive, send)
      return
    parts, size = [], 0
    while True:
      message = await receive()
      if message['type'] == 'http.disconnect':
        return
      parts.append(message.get('body', b''))
      size += len(parts[-1])
      if size > self.max_body:
        await _answer(send, 413, self._too_big())
        return
      if not message.get('more_body'):
        break
    replayed = False

    async def replay():
      nonlocal replayed
      if replayed:  # Then the client's own messages: a disconnect.
        return await receive()
      replayed = True
      return {'type': 'http.request', 'body': b''.join(parts),
              'more_body': False}

    await self.app(scope, replay, send)
