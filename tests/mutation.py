"""Mutation testing of the core: plant one small bug at a time, see which test
catches it.

  python -m tests.mutation              # every mutant (BUILD_NOTES.md:
                                        # "Mutation testing" has the time)
  python -m tests.mutation --list       # the mutants, checked, not run
  python -m tests.mutation --only ID    # one mutant (repeat for more)
  python tests/mutation.py ...          # the same, as a script

Each mutant is one small semantic change to one module: an exact snippet
that must occur exactly once in the file, its replacement, the fast tests
that should fail because of it, and what the bug would mean for a user.
First the runner runs the union of the selected mutants' tests on the
unchanged tree: they must pass (else there is nothing to measure), and they
fill an XLA compilation cache that every later run shares, so a mutant's
run compiles only the programs its change alters. Then, one mutant at a
time, it writes the mutated file, runs
`python -m pytest -q -x -p no:cacheprovider -m "not slow" <tests>` in a
subprocess with a time limit, records killed / survived / timeout and the
first failing test, and puts the file back.

The tree is always put back: the original file is copied to
`.mutation_backup/` before it is changed and the copy removed after the
restore; the restore runs in a `finally`; SIGINT and SIGTERM end the run
through it (the test subprocess is killed first); and a backup left by a
run that was killed outright (SIGKILL, a power cut) is put back when the
runner next starts, before anything else. One run at a time per checkout:
a second one stops at once. Restored files get their original bytes and
modification time, and the test subprocesses write no bytecode, so no
`.pyc` of a mutant outlives it.

Not a test module (pytest never collects it) and not part of CI.
"""

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import importlib.util
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
BACKUP = REPO / '.mutation_backup'
CACHE_ENV = 'JAYLYRICS_TEST_XLA_CACHE'  # Read by tests/conftest.py.
DEFAULT_TIMEOUT = 420.0  # Seconds per mutant's test run.


@dataclasses.dataclass(frozen=True)
class Mutant:
  """One planted bug.

  id: short name; module: dotted module path (resolved to its file with
  importlib.util.find_spec); old: source text that occurs exactly once in
  that file; new: what replaces it; tests: pytest node ids or files, the
  likeliest killer first (the run stops at the first failure); meaning:
  what the bug would do to a user.
  """
  id: str
  module: str
  old: str
  new: str
  tests: tuple[str, ...]
  meaning: str

  @property
  def path(self) -> pathlib.Path:
    return _module_file(self.module)


PROC = 'jaylyrics_jax.generation.processors'
SAMPLER = 'jaylyrics_jax.generation.sampler'
CONTROLS = 'jaylyrics_jax.generation.controls'
LYRICS = 'jaylyrics_jax.generation.lyrics'
STEPS = 'jaylyrics_jax.training.steps'
FUSED = 'jaylyrics_jax.models.fused'
CHECKPOINTS = 'jaylyrics_jax.runs.checkpoints'
TRAIN = 'jaylyrics_jax.runs.train'
LOCK = 'jaylyrics_jax.runs.lock'
LINES = 'jaylyrics_jax.generation.line_writer'
CORPUS = 'jaylyrics_jax.data.corpus'
TUNE = 'jaylyrics_jax.runs.tune'
SONGWRITER = 'jaylyrics_jax.generation.songwriter'
WEB = 'experiments.web_app'
GUARD = 'experiments.web_guard'

T_PROC = 'tests/generation/test_processors.py'
T_SAMPLING = 'tests/generation/test_sampling.py'
T_WIRING = 'tests/generation/test_wiring.py'
T_SONGWRITER = 'tests/generation/test_songwriter.py'
T_TRAINING = 'tests/training/test_training.py'
T_CLIPPING = 'tests/training/test_clipping.py'
T_FUSED = 'tests/models/test_fused.py'
T_TRAINER = 'tests/runs/test_trainer.py'
T_LOCK = 'tests/runs/test_workdir_lock.py'
T_LINES = 'tests/generation/test_line_writer.py'
T_RTL = 'tests/generation/test_right_to_left.py'

W_LINES = f'{T_WIRING}::test_min_and_max_line_bound_every_line_and_both_are_reached'
W_COPY = f'{T_WIRING}::test_max_copy_allows_runs_of_n_never_n_plus_1'
W_REPEAT = f'{T_WIRING}::test_no_repeat_ngram_reaches_the_text'
W_BEST = (f'{T_WIRING}::test_best_of_keeps_the_least_penalised_of_equally_'
          'likely_candidates')
W_SCORE = (f'{T_WIRING}::test_a_loop_or_a_copy_loses_to_clean_lines_of_equal_'
           'likelihood')
W_LENGTH = f'{T_WIRING}::test_length_weight_reaches_the_line_writer'
W_SCHEME = f'{T_WIRING}::test_rhyme_scheme_reaches_the_line_writer'
W_RHYME_WEIGHT = f'{T_WIRING}::test_rhyme_weight_reaches_the_line_writer'
W_SEEK = f'{T_WIRING}::test_seek_bonus_reaches_the_line_writer'
W_RTL_RHYME = f'{T_WIRING}::test_a_right_to_left_model_rhymes_its_line_ends'
L_BEST = f'{T_LINES}::test_keeps_the_best_scoring_candidate'
P_BOUNDS = f'{T_PROC}::test_line_form_bounds_every_line'
DRAW_EXACT = f'{T_SAMPLING}::test_two_level_draw_is_exact_at_every_vocabulary_size'
FUSED_LSTM = f'{T_FUSED}::test_window_lstm_equals_flax_rnn_with_gradients'
RESUME = f'{T_TRAINER}::test_resume_equals_uninterrupted'
T_WEB = 'tests/test_web_requests.py'
WEB_FIELDS = f'{T_WEB}::test_bad_fields_are_422_naming_the_field'
WEB_REFUSED = f'{T_WEB}::test_what_the_songwriter_refuses_is_a_400'
WEB_BODY = f'{T_WEB}::test_body_cap_and_nesting'
WEB_HOST = f'{T_WEB}::test_host_origin_and_content_type'

MUTANTS = (
    # ---- generation/processors.py: the decoding controls ------------------
    Mutant('lineform-min-off-by-one', PROC,
           '(line_len < self.min_len) & is_space',
           '(line_len <= self.min_len) & is_space',
           (W_LINES, P_BOUNDS),
           'every line one character longer than min_line asks'),
    Mutant('lineform-max-off-by-one', PROC,
           '(line_len >= self.max_len) & ~is_space',
           '(line_len > self.max_len) & ~is_space',
           (P_BOUNDS, W_LINES),
           'lines one character longer than max_line'),
    Mutant('rhyme-not-strict', PROC,
           'if self.strict:', 'if not self.strict:',
           (f'{T_PROC}::test_forced_rhyme_ends_every_line_on_the_rhyme',),
           'a line may end before it rhymes'),
    Mutant('rhyme-same-end-again', PROC,
           '& (\n        state.last != state.prev_end)',
           '& (\n        state.last == state.last)',
           (f'{T_PROC}::test_forced_rhyme_ends_every_line_on_the_rhyme',),
           'lines may end on the very character the last line ended on'),
    Mutant('rhyme-auto-takes-nothing', PROC,
           '(state.last >= 0) & (\n        last_group >= 0)',
           '(state.last >= 0) & (\n        last_group < 0)',
           (f'{T_PROC}::test_auto_rhyme_takes_the_first_lines_rhyme',),
           "rhyme='auto' never takes the first line's rhyme"),
    Mutant('no-repeat-bans-nothing', PROC,
           '(state.match >= self.n - 1)', '(state.match >= self.n)',
           (f'{T_PROC}::test_no_repeat_never_repeats_an_ngram', W_REPEAT),
           'no_repeat_ngram lets every n-gram repeat'),
    Mutant('no-repeat-chorus-count', PROC,
           'count <= self.max_line_repeats)',
           'count < self.max_line_repeats)',
           (f'{T_PROC}::test_a_whole_line_may_come_back_as_a_chorus',),
           'a chorus line comes back one time fewer than max_line_repeats'),
    Mutant('max-copy-bans-nothing', PROC,
           '(ctx >= 0) & (idx < hi)', '(ctx >= 0) & (idx < lo)',
           (f'{T_PROC}::test_max_copy_never_writes_a_longer_training_run',
            W_COPY),
           'max_copy lets the model recite the training text'),
    Mutant('max-copy-space-resets', PROC,
           'ids = jnp.where(token == self.space_id, ids, new_ids)',
           'ids = new_ids',
           (f'{T_PROC}::test_max_copy_never_writes_a_longer_training_run',
            W_COPY),
           'a line break hides a copy: recitals across lines go unbanned'),
    Mutant('top-k-keeps-fewer', PROC,
           'jnp.where(logits < kth, NEG_INF, logits)',
           'jnp.where(logits <= kth, NEG_INF, logits)',
           (f'{T_SAMPLING}::test_weighted_with_top_k_one_is_argmax',
            f'{T_SAMPLING}::test_top_k_and_temperature'),
           'top_k keeps k - 1 characters (none for k=1)'),
    Mutant('top-p-drops-the-crossing-char', PROC,
           'jnp.where(bits >= low, logits, NEG_INF)',
           'jnp.where(bits > low, logits, NEG_INF)',
           (f'{T_SAMPLING}::test_top_p_keeps_smallest_set',),
           'the nucleus misses the character that reaches top_p'),
    Mutant('temperature-multiplies', PROC,
           'return logits / tables, state', 'return logits * tables, state',
           (f'{T_SAMPLING}::test_top_k_and_temperature',),
           'temperature 0.5 sharpens where it should flatten, and back'),
    Mutant('combined-draws-everywhere-else', PROC,
           'jnp.where(token == self.draw_after, logits, greedy)',
           'jnp.where(token != self.draw_after, logits, greedy)',
           (f'{T_SAMPLING}::test_combined_draws_after_space_only',),
           "mode='combined' is greedy after a space and draws elsewhere"),
    Mutant('chain-bans-everything', PROC,
           'jnp.where(jnp.any(changed > NEG_INF), changed, logits)',
           'jnp.where(True, changed, logits)',
           (f'{T_PROC}::test_a_chain_never_bans_every_character',),
           'two controls that cannot both hold leave no character to draw'),

    # ---- generation/sampler.py: the inverse-CDF draw ----------------------
    Mutant('draw-block-offset', SAMPLER,
           'block_cdf[jnp.maximum(row - 1, 0)]', 'block_cdf[row]',
           (DRAW_EXACT,),
           'draws inside a block start from the wrong offset'),
    Mutant('draw-unscaled-uniform', SAMPLER,
           'u = u.astype(block_cdf.dtype) * block_cdf[-1]',
           'u = u.astype(block_cdf.dtype)',
           (DRAW_EXACT,),
           'draws ignore the total mass: the first characters win'),

    # ---- training/steps.py: the optimizer and the train step --------------
    Mutant('clip-removed', STEPS,
           'optax.chain(optax.clip_by_global_norm(config.grad_clip),\n'
           '                       optax.adam(learning_rate))',
           'optax.chain(optax.adam(learning_rate))',
           (T_CLIPPING,),
           'the design\'s "Adam with global-norm clipping" loses its clip'),
    Mutant('lr-decays-late', STEPS,
           'epoch = count // steps_per_epoch',
           'epoch = count // (steps_per_epoch + 1)',
           (f'{T_TRAINING}::test_learning_rate_decays_per_epoch',),
           'the learning rate decays later each epoch'),
    Mutant('nonfinite-not-recorded', STEPS,
           '(state.nonfinite_step < 0) & ~finite',
           '(state.nonfinite_step < 0) & finite',
           (f'{T_TRAINING}::test_nonfinite_step_is_recorded',),
           'a NaN loss is not noticed (and a finite one is)'),
    Mutant('dropout-same-masks', STEPS,
           'jax.random.fold_in(key, state.step)', 'key',
           (f'{T_TRAINING}::test_each_step_draws_its_own_dropout_masks',),
           'every step draws the same dropout masks'),
    Mutant('carry-not-carried', STEPS,
           'opt_state=opt_state, carry=carry,',
           'opt_state=opt_state, carry=state.carry,',
           (f'{T_TRAINING}::test_the_carry_goes_on_to_the_next_window',),
           'truncated BPTT restarts from zeros every window'),

    # ---- models/fused.py: the fused LSTM and loss -------------------------
    Mutant('fused-forget-gate-grad', FUSED,
           'dc * cp * f * (1 - f)', 'dc * cp * (1 - f)',
           (FUSED_LSTM,),
           "the forget gate's gradient is wrong: training drifts"),
    Mutant('fused-cell-grad-skips-forget', FUSED,
           'return (dc * f, dz @ wh.T), dz', 'return (dc, dz @ wh.T), dz',
           (FUSED_LSTM,),
           'the cell gradient flows back through time unscaled'),
    Mutant('fused-gates-swapped', FUSED,
           'new_c = f * c + i * g', 'new_c = i * c + f * g',
           (FUSED_LSTM,),
           'the fused LSTM computes another cell than the reference'),
    Mutant('fused-loss-grad-unscaled', FUSED,
           '(ct / probs.shape[0])', 'ct',
           (f'{T_FUSED}::test_dense_cross_entropy_equals_optax_with_gradients',),
           'the loss gradient is the sum, not the mean: steps N times too big'),

    # ---- runs/checkpoints.py: restore and the digest ----------------------
    Mutant('digest-not-checked', CHECKPOINTS,
           "if tree_digest(state) != meta.get('state_sha256'):",
           'if False:',
           (f'{T_TRAINER}::test_flipped_bytes_are_caught_by_the_digest',),
           'a checkpoint whose arrays changed on disk is loaded as good'),
    Mutant('digest-ignores-values', CHECKPOINTS,
           'h.update(np.ascontiguousarray(a).tobytes())', 'pass',
           (f'{T_TRAINER}::test_changed_values_under_the_saved_digest_are_'
            'caught',),
           'the digest covers shapes only: changed values pass'),
    Mutant('restore-oldest-first', CHECKPOINTS,
           'steps = sorted(manager.all_steps(), reverse=True)',
           'steps = sorted(manager.all_steps())',
           (f'{T_TRAINER}::test_damaged_newest_checkpoint_falls_back', RESUME),
           "which='latest' loads the oldest checkpoint"),

    # ---- runs/train.py: resume --------------------------------------------
    Mutant('resume-restarts-the-epoch', TRAIN,
           "loop = LoopState(**meta['loop'])",
           "loop = LoopState(**dict(meta['loop'], position=0))",
           (RESUME,),
           'a resumed run trains the interrupted epoch again from its start'),
    Mutant('resume-drops-the-carry', TRAIN,
           'if loop.position == 0:', 'if True:',
           (RESUME,),
           'a run resumed mid-epoch restarts its hidden state from zeros'),

    # ---- runs/lock.py: the workdir lock -----------------------------------
    Mutant('lock-shared', LOCK,
           'fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)',
           'fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)',
           (f'{T_LOCK}::test_second_writer_is_refused_naming_the_first',),
           'two runs write one workdir at once'),
    Mutant('lock-not-reentrant', LOCK,
           '_held[path][1] += 1', '_held[path][1] += 0',
           (f'{T_LOCK}::test_reentrant_in_one_process_and_released_at_the_'
            'outermost',),
           "an inner library call releases the command's lock early"),

    # ---- generation/lyrics.py: best-of and cutting lines ------------------
    Mutant('best-of-sign-flipped', LYRICS,
           'return mean_log_prob - PENALTY * penalty',
           'return mean_log_prob + PENALTY * penalty',
           (W_SCORE, W_BEST),
           'best_of=K returns the candidate with the most loops and copies'),
    Mutant('best-of-keeps-the-worst', LYRICS,
           'group.sort(key=lambda c: -c.score)',
           'group.sort(key=lambda c: c.score)',
           (W_BEST, f'{T_PROC}::test_best_of_keeps_the_best_scoring_candidate'),
           'best_of=K returns the lowest-scoring candidate'),
    Mutant('best-of-rewards-no-rhyme', LYRICS,
           "penalty += 1.0 - fig['rhyme_rate']",
           "penalty += fig['rhyme_rate']",
           (W_SCORE,),
           'with rhyme on, best-of prefers the lines that do not rhyme'),
    Mutant('lines-cut-one-late', LYRICS,
           'int(breaks[needed - 1]) + 1', 'int(breaks[needed]) + 1',
           (f'{T_PROC}::test_same_key_same_lyrics_and_lines_cut',),
           'lines=N writes N + 1 lines'),

    # ---- generation/controls.py: SamplingConfig -> the chain --------------
    Mutant('max-copy-wired-n-plus-1', CONTROLS,
           'config.max_copy)\n'
           '      add(processors.MaxCopy(config.max_copy, space_id',
           'config.max_copy + 1)\n'
           '      add(processors.MaxCopy(config.max_copy + 1, space_id',
           (W_COPY,),
           '--max_copy=7 allows 8-character copies'),
    Mutant('min-line-not-passed', CONTROLS,
           'processors.LineForm(space_id, min_line or 1,',
           'processors.LineForm(space_id, 1,',
           (W_LINES,),
           'min_line is ignored: lines of any shortness'),
    Mutant('max-line-not-passed', CONTROLS,
           'max_line or np.iinfo(np.int32).max))',
           'np.iinfo(np.int32).max))',
           (W_LINES,),
           'max_line is ignored: lines of any length'),
    Mutant('rhyme-choice-ignored', CONTROLS,
           "target = (-1 if config.rhyme == 'auto'",
           'target = (-1 if True',
           (f'{T_SONGWRITER}::test_a_chosen_rhyme_and_no_rhyme',),
           "rhyme='ang' rhymes on whatever the first line ends with"),
    Mutant('demo-key-ignores-the-seed-text', SONGWRITER,
           'lyrics.text_key(rng_seed, seed)', "lyrics.text_key(rng_seed, '')",
           (f'{T_SONGWRITER}::test_write_draws_what_the_library_draws_with_'
            'the_text_key',),
           'the demo page draws every seed text with the same random '
           'numbers: two seeds go on with the same lines'),
    Mutant('no-repeat-wired-n-plus-1', CONTROLS,
           'processors.NoRepeat(config.no_repeat_ngram, space_id',
           'processors.NoRepeat(config.no_repeat_ngram + 1, space_id',
           (W_REPEAT,),
           'no_repeat_ngram=4 allows repeated 4-grams'),
    Mutant('top-p-not-passed', CONTROLS,
           'jnp.asarray(config.top_p, jnp.float32)',
           'jnp.asarray(1.0, jnp.float32)',
           (f'{T_SAMPLING}::test_top_p_keeps_smallest_set',),
           'top_p has no effect'),
    Mutant('combined-wired-as-argmax', CONTROLS,
           'processors.Greedy(draw_after=space_id)', 'processors.Greedy()',
           (f'{T_SAMPLING}::test_combined_draws_after_space_only',),
           "mode='combined' never draws: every sample is the same"),

    # ---- experiments/web_app.py, web_guard.py: the request models ---------
    Mutant('web-bool-as-number', WEB,
           'if isinstance(value, bool):', 'if False:',
           (WEB_FIELDS,),
           'WEB: {"lines": true} is taken as 1 line'),
    Mutant('web-fraction-as-whole', WEB,
           "lines: Whole = pydantic.Field(DEFAULTS['lines']",
           "lines: Number = pydantic.Field(DEFAULTS['lines']",
           (WEB_FIELDS,),
           'WEB: {"lines": 2.5} reaches the songwriter: a 500, not 422'),
    Mutant('web-seed-not-text', WEB,
           "seed: str = pydantic.Field(DEFAULTS['seed'], max_length=MAX_SEED)",
           "seed: Any = DEFAULTS['seed']",
           (WEB_FIELDS,),
           'WEB: a seed that is not text fails with 500, not 422'),
    Mutant('web-body-not-object', WEB,
           "if not loc or error.get('type') == 'model_attributes_type':",
           'if False:',
           (WEB_REFUSED,),
           'WEB: a JSON list as the body fails with 500, not 422'),
    Mutant('web-temperature-no-floor', WEB,
           'ge=MIN_TEMPERATURE, le=MAX_TEMPERATURE',
           'le=MAX_TEMPERATURE',
           (WEB_FIELDS,),
           'WEB: temperature 0 or 1e-40 passes the request model (the '
           'songwriter refuses it later, naming no field)'),
    Mutant('web-lines-no-ceiling', WEB,
           'ge=1, le=MAX_LINES)', 'ge=1)',
           (WEB_FIELDS,),
           'WEB: lines=65 passes the request model (the songwriter refuses '
           'it later, naming no field)'),
    Mutant('web-body-cap-1000x', WEB,
           'MAX_BODY = 64 * 1024', 'MAX_BODY = 64 * 1024 * 1024',
           (WEB_BODY,),
           'WEB: a 3 MB body is read and parsed, not refused with 413'),
    Mutant('web-any-host', GUARD,
           'if host_name(host) not in self.hosts:', 'if False:',
           (WEB_HOST,),
           'WEB: any Host is served: a DNS-rebinding page reaches the server'),
    Mutant('web-any-origin', GUARD,
           'if origin is not None and urlsplit(origin).netloc.lower() != '
           'host.lower():',
           'if False:',
           (WEB_HOST,),
           'WEB: a fetch from another site is served, not refused with 403'),
    Mutant('web-chunked-body-uncapped', GUARD,
           'if size > self.max_body:', 'if size > 1024 * self.max_body:',
           (WEB_BODY,),
           'WEB: a body sent without Content-Length is read without a cap'),

    # ---- generation/line_writer.py: the line writer -----------------------
    Mutant('lines-scored-by-sum', LINES,
           'values, 0.0), axis=1) / n', 'values, 0.0), axis=1)',
           (L_BEST,),
           'candidates are scored by total, not mean, log-probability: '
           'short lines win'),
    Mutant('length-weight-dropped', LINES,
           'tables.length_weight * tables.length_prior[',
           'tables.length_prior[',
           (L_BEST, W_LENGTH),
           'the length prior counts in full whatever length_weight says'),
    Mutant('break-weight-dropped', LINES,
           'mean + tables.break_weight * at_break +', 'mean +',
           (L_BEST,),
           "the line break's own log-probability no longer counts: lines "
           'stopped mid-phrase win as often as finished ones'),
    Mutant('line-rank-ignores-rhyme', LINES,
           'preferred = allowed & rhymes &', 'preferred = allowed & False &',
           (f'{T_LINES}::test_every_kept_line_rhymes_when_any_candidate_does',
            W_SCHEME),
           'the rhyme scheme is ignored: a better-scoring line that does not '
           'rhyme wins'),
    Mutant('seekers-get-no-bonus', LINES,
           'return (lines.seek_bonus *', 'return (0.0 *',
           (f'{T_LINES}::test_the_rhyme_seekers_draw_the_group_and_are_scored_'
            'without_the_bonus', W_SEEK),
           'seek_bonus has no effect: no more rhyming candidates than before'),
    Mutant('seek-bonus-not-wired', LINES,
           'bool(pattern) and writer.seek_bonus > 0,',
           'False,', (W_SEEK,),
           'LineConfig.seek_bonus has no effect through sample_text'),
    Mutant('seekers-from-the-first-character', LINES,
           '+ jnp.arange(spec.steps) + 1 >= spec.min_len',
           '+ jnp.arange(spec.steps) + 1 >= 0',
           (f'{T_LINES}::test_the_rhyme_seekers_draw_the_group_and_are_scored_'
            'without_the_bonus',),
           'the seekers push the rhyme from the first character, where a '
           'line ending on it would be too short to keep'),
    Mutant('rhyme-weight-ignored', LINES,
           'top - lines.rhyme_weight', 'top - jnp.inf',
           (f'{T_LINES}::test_a_finite_rhyme_weight_adds_to_the_score_of_a_'
            'rhyming_line', W_RHYME_WEIGHT),
           'rhyme_weight has no effect: a rhyming line is kept however badly '
           'it scores (a fragment that lands on the rhyme beats a whole line)'),
    Mutant('min-line-not-a-filter', LINES,
           '(length >= max(spec.min_len, 1))', '(length >= 1)',
           (f'{T_LINES}::test_a_line_shorter_than_min_len_fails_and_is_never_'
            'padded',),
           'lines shorter than min_line are kept while longer ones exist'),
    Mutant('unended-line-not-capped', LINES,
           'capped = ~ended[best] |', 'capped =',
           (f'{T_LINES}::test_no_capped_line_is_kept_while_an_uncapped_one_'
            'exists',),
           'when no candidate ends in time, the kept line is an empty one'),
    Mutant('rewrite-may-keep-the-old-line', LINES,
           '(length <= spec.max_len) & fresh &', '(length <= spec.max_len) &',
           (f'{T_LINES}::test_a_rewrite_never_keeps_the_line_it_replaces',
            f'{T_LINES}::test_the_songwriter_writes_whole_lines_and_rewrites_'
            'a_new_one'),
           "'rewrite this line' may give back the very same line"),
    Mutant('kept-state-one-step-late', LINES,
           'lambda x: x[best, keep - 1]', 'lambda x: x[best, keep]',
           (f'{T_LINES}::test_the_state_kept_from_the_draw_is_the_chosen_line_'
            'read_again',),
           'the next line starts one character after the chosen line ends: '
           'its first character is read as part of the line before'),
    Mutant('kept-state-capped-token', LINES,
           'after).replace(\n        token=jnp.int32(spec.space_id))',
           'after)',
           (f'{T_LINES}::test_the_state_kept_from_the_draw_is_the_chosen_line_'
            'read_again',),
           'after a line cut at the cap, the next line continues the cut '
           "line's drawn character instead of starting a new line"),
    Mutant('recital-penalty-dropped', LINES,
           '-\n            lines.recital_penalty * recited -', '+ 0 -',
           (f'{T_LINES}::test_a_recited_line_loses_the_recital_penalty',),
           'a whole line of the training text wins wherever it fits: the '
           'same recited line comes back in verse after verse'),
    Mutant('recital-weight-ignored', LINES,
           'lines.recital_weights[None, :], 0.0), axis=1)',
           '1.0, 0.0), axis=1)',
           (f'{T_LINES}::test_a_recited_line_loses_the_recital_penalty',),
           'a chorus line the training songs repeat loses no more than a '
           'line they have once: it comes back in verse after verse'),
    Mutant('recital-weight-not-counted', LINES,
           'np.bincount(inverse.ravel(), weights=counts)',
           'np.bincount(inverse.ravel())',
           (f'{T_LINES}::test_the_recital_tables_come_from_the_training_'
            'lines',),
           'every training line weighs as if written once'),
    Mutant('recital-penalty-not-wired', LINES,
           'recital_penalty=jnp.float32(writer.recital_penalty)',
           'recital_penalty=jnp.float32(1.0)',
           (f'{T_LINES}::test_the_recital_tables_come_from_the_training_'
            'lines',),
           'LineConfig.recital_penalty has no effect (always the default)'),
    Mutant('length-weight-not-wired', LINES,
           'length_weight=jnp.float32(writer.length_weight)',
           'length_weight=jnp.float32(0.25)',
           (W_LENGTH,),
           'LineConfig.length_weight has no effect (always the default)'),
    Mutant('break-weight-not-wired', LINES,
           'break_weight=jnp.float32(writer.break_weight)',
           'break_weight=jnp.float32(1.0)',
           (f'{T_LINES}::test_break_weight_prefers_lines_the_model_ends',),
           'LineConfig.break_weight has no effect (always the default)'),
    Mutant('likelihood-weight-dropped', LINES,
           'tables.likelihood_weight * mean +', 'mean +',
           (L_BEST,),
           "a candidate's mean log-probability counts in full whatever "
           'likelihood_weight says'),
    Mutant('likelihood-weight-not-wired', LINES,
           'likelihood_weight=jnp.float32(writer.likelihood_weight)',
           'likelihood_weight=jnp.float32(1.0)',
           (f'{T_LINES}::test_likelihood_weight_prefers_lines_the_model_finds_'
            'likely',),
           'LineConfig.likelihood_weight has no effect (always the default)'),
    Mutant('novelty-term-dropped', LINES,
           'scores = scores + lines.novelty_weight * _line_mean(',
           'scores = scores + 0.0 * _line_mean(',
           (L_BEST,),
           "the n-gram's surprise no longer counts: lines pieced together "
           'from training phrases win as before'),
    Mutant('novelty-weight-not-wired', LINES,
           'novelty_weight=jnp.float32(writer.novelty_weight)',
           'novelty_weight=jnp.float32(0.0)',
           (f'{T_LINES}::test_novelty_weight_prefers_lines_the_ngram_finds_'
            'new',),
           'LineConfig.novelty_weight has no effect'),
    Mutant('ngram-state-one-step-late', LINES,
           'grams = (grams[best, keep - 1] if', 'grams = (grams[best, keep] if',
           (f'{T_LINES}::test_the_ngram_state_follows_the_kept_line',),
           "the next line's surprise is read as if the line break had been "
           'read already'),
    Mutant('seed-ngram-reads-the-last-character', LINES,
           'jnp.where(i < seed_len - 1, new, g)',
           'jnp.where(i < seed_len, new, g)',
           (f'{T_LINES}::test_the_seed_primes_the_ngram_state_padding_'
            'skipped',),
           "the first line's surprise is read as if the seed's last "
           'character came twice'),
    Mutant('bent-penalty-dropped', LINES,
           ' - lines.bent_penalty * bent)', ')',
           (f'{T_LINES}::test_a_bent_line_loses_the_bent_penalty',),
           'a training line bent by one character (雨下整遍) wins wherever '
           'it is likely'),
    Mutant('bent-penalty-not-wired', LINES,
           'bent_penalty=jnp.float32(writer.bent_penalty)',
           'bent_penalty=jnp.float32(0.0)',
           (f'{T_LINES}::test_the_recital_tables_come_from_the_training_'
            'lines',),
           'LineConfig.bent_penalty has no effect'),
    Mutant('bent-ignores-an-added-character', LINES,
           'added = (length > BENT_MIN) &', 'added = (length > 99) &',
           (f'{T_LINES}::test_bent_lines_on_the_device_are_the_reports',),
           'a training line with one character added is not seen as bent'),
    Mutant('deletion-hash-keeps-the-length', LINES,
           'before + after + (length - 1)[:, None]',
           'before + after + length[:, None]',
           (f'{T_LINES}::test_bent_lines_on_the_device_are_the_reports',),
           'a line with a character left out is fingerprinted at its old '
           'length: no bent line is ever found'),
    Mutant('rhyme-scheme-not-wired', LINES,
           'pattern = SCHEMES[writer.rhyme_scheme] if',
           "pattern = SCHEMES['AABB'] if",
           (W_SCHEME,),
           'LineConfig.rhyme_scheme has no effect (always AABB)'),
    Mutant('right-to-left-rhymes-the-last-drawn', LINES,
           '  if spec.reverse:\n    return first_drawn\n', '',
           (f'{T_LINES}::test_a_right_to_left_line_rhymes_on_the_first_'
            'character_drawn',),
           'a right-to-left line rhymes on its first character, not its end'),
    Mutant('right-to-left-seekers-everywhere', LINES,
           '(state.line_len + jnp.arange(spec.steps)) == 0',
           '(state.line_len + jnp.arange(spec.steps)) >= 0',
           (f'{T_LINES}::test_right_to_left_seekers_draw_the_group_first_only',),
           'right-to-left seekers push rhyming characters all through the '
           'line'),
    Mutant('right-to-left-not-wired', LINES,
           '                       model_config.right_to_left)',
           '                       False)',
           (f'{T_RTL}::test_the_line_writer_writes_the_next_lines_forwards',
            W_RTL_RHYME),
           'a right-to-left run rhymes the starts of its lines'),
    Mutant('right-to-left-trains-forwards', CORPUS,
           '  if right_to_left:\n    text = reverse_lines(text)\n', '',
           (f'{T_RTL}::test_the_run_learned_its_lines_backwards',),
           'a right-to-left run learns lines forwards and is read backwards'),
    Mutant('right-to-left-lines-not-turned-back', LYRICS,
           'drawn = [(reverse_lines(text[:text.rfind(\' \') + 1]), mean_lp)',
           'drawn = [(text[:text.rfind(\' \') + 1], mean_lp)',
           (f'{T_RTL}::test_a_character_at_a_time_it_writes_the_next_lines_'
            'forwards',),
           'a right-to-left run prints every line back to front'),
    Mutant('right-to-left-ngram-forwards', TUNE,
           '  return reverse_lines(text) if model.model_config.right_to_left '
           'else text',
           '  return text',
           (f'{T_RTL}::test_the_run_learned_its_lines_backwards',),
           "a right-to-left run's n-grams count its lines forwards"),
)


# ------------------------------------------------------------ the tree


def _module_file(module: str) -> pathlib.Path:
  """The source file of `module`, which must be this checkout's."""
  if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
  spec = importlib.util.find_spec(module)
  if spec is None or not spec.origin:
    raise SystemExit(f'mutation: no module {module!r}.')
  path = pathlib.Path(spec.origin).resolve()
  if REPO not in path.parents:
    raise SystemExit(f'mutation: {module} resolves to {path}, outside '
                     f'{REPO}: run from the checkout to mutate.')
  return path


def problems(mutant: Mutant) -> list[str]:
  """Why `mutant` cannot be planted ([] when it can)."""
  out = []
  count = mutant.path.read_text(encoding='utf-8').count(mutant.old)
  if count != 1:
    out.append(f'the snippet occurs {count} times in {mutant.module}')
  for test in mutant.tests:
    if not (REPO / test.split('::')[0]).is_file():
      out.append(f'no test file {test.split("::")[0]}')
  return out


def _sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def _write_atomic(path: pathlib.Path, data: bytes) -> None:
  tmp = path.with_name(path.name + '.tmp')
  tmp.write_bytes(data)
  os.replace(tmp, path)


def _put_back(path: pathlib.Path, data: bytes, mtime_ns: int) -> None:
  """The original bytes and modification time (so `.pyc`s of the original
  stay valid and no tool sees a change)."""
  _write_atomic(path, data)
  os.utime(path, ns=(mtime_ns, mtime_ns))


def recover() -> str | None:
  """Puts back a file left mutated by a run that was killed outright; the
  note to print, or None when there was nothing to do."""
  manifest = BACKUP / 'manifest.json'
  if not BACKUP.exists():
    return None
  note = None
  if manifest.exists():  # Written just before the file was changed.
    record = json.loads(manifest.read_text(encoding='utf-8'))
    original = (BACKUP / 'original').read_bytes()
    if _sha256(original) != record['sha256']:
      raise SystemExit(f'mutation: the backup in {BACKUP} is damaged; '
                       f'check {record["path"]} by hand (git diff).')
    path = REPO / record['path']
    if path.read_bytes() != original:
      _put_back(path, original, record['mtime_ns'])
      note = (f'Put back {record["path"]}, left mutated by an interrupted '
              'run.')
  shutil.rmtree(BACKUP)
  return note


class _Signals:
  """SIGINT/SIGTERM raise `Interrupted`, except while a file is being put
  back: then they wait until it is."""

  def __init__(self):
    self.holding, self.pending = False, None

  def install(self):
    for signum in (signal.SIGINT, signal.SIGTERM):
      signal.signal(signum, self._handle)

  def _handle(self, signum, frame):
    del frame
    if self.holding:
      self.pending = signum
    else:
      raise Interrupted(signal.Signals(signum).name)

  @contextlib.contextmanager
  def held(self):
    self.holding = True
    try:
      yield
    finally:
      self.holding = False
      if self.pending is not None:
        signum, self.pending = self.pending, None
        raise Interrupted(signal.Signals(signum).name)


class Interrupted(Exception):
  pass


SIGNALS = _Signals()


@contextlib.contextmanager
def planted(mutant: Mutant):
  """The mutant written into its file for the `with` block, always undone."""
  path = mutant.path
  original = path.read_bytes()
  mtime_ns = path.stat().st_mtime_ns
  text = original.decode('utf-8')
  if text.count(mutant.old) != 1:
    raise SystemExit(f'mutation: {mutant.id}: ' + '; '.join(problems(mutant)))
  with SIGNALS.held():
    BACKUP.mkdir()
    _write_atomic(BACKUP / 'original', original)
    _write_atomic(BACKUP / 'manifest.json', json.dumps({
        'path': str(path.relative_to(REPO)), 'sha256': _sha256(original),
        'mtime_ns': mtime_ns, 'mutant': mutant.id}).encode('utf-8'))
    _write_atomic(path, text.replace(mutant.old, mutant.new).encode('utf-8'))
  try:
    yield
  finally:
    with SIGNALS.held():
      _put_back(path, original, mtime_ns)
      shutil.rmtree(BACKUP)


# ------------------------------------------------------------ running


@dataclasses.dataclass
class Outcome:
  status: str    # killed, survived, timeout, error
  detail: str    # The first failing test, or what went wrong.
  seconds: float
  output: str


def run_tests(tests, cache: str, timeout: float) -> Outcome:
  """`pytest -x` over `tests` in a subprocess of its own process group."""
  cmd = [sys.executable, '-m', 'pytest', '-q', '-x', '-p', 'no:cacheprovider',
         '-m', 'not slow', *tests]
  env = dict(os.environ, PYTHONUTF8='1', PYTHONDONTWRITEBYTECODE='1',
             **{CACHE_ENV: cache})
  start = time.monotonic()
  with tempfile.TemporaryFile('w+', encoding='utf-8') as log:
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
      rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      rc = None
    finally:
      if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.seek(0)
    output = log.read()
  seconds = time.monotonic() - start
  if rc is None:
    return Outcome('timeout', f'over {timeout:.0f} s', seconds, output)
  failed = re.findall(r'^(?:FAILED|ERROR) (\S+)', output, re.M)
  if rc == 0:
    return Outcome('survived', '', seconds, output)
  if rc in (1, 2) and failed:  # 2: an error while collecting.
    return Outcome('killed', failed[0], seconds, output)
  return Outcome('error', f'pytest exit code {rc}', seconds, output)


def _table(rows) -> str:
  width = max(len(m.id) for m, _ in rows) + 2
  lines = [f'{"mutant":{width}}{"result":10}{"seconds":>8}  caught by']
  for m, o in rows:
    lines.append(f'{m.id:{width}}{o.status:10}{o.seconds:8.1f}  {o.detail}')
  return '\n'.join(lines)


def _minutes(seconds: float) -> str:
  return f'{int(seconds // 60)} min {int(seconds % 60):02d} s'


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m tests.mutation',
      description='Plants each mutant of the core in turn and runs the tests '
      'that should catch it.')
  parser.add_argument('--list', action='store_true',
                      help='list the mutants (and check them); run nothing')
  parser.add_argument('--only', action='append', metavar='ID',
                      help='run this mutant (repeatable)')
  parser.add_argument('--timeout', type=float, default=DEFAULT_TIMEOUT,
                      help='seconds per mutant test run (default %(default)s)')
  parser.add_argument('--cache', default='',
                      help='XLA compilation cache folder to keep between runs '
                      '(default: a temporary one)')
  parser.add_argument('--no-baseline', action='store_true',
                      help='skip the run of the tests on the unchanged tree')
  args = parser.parse_args(argv)

  # One run per checkout: a second one would take the first's mutant for
  # a file left behind and put it back under its feet.
  held = open(__file__, encoding='utf-8')  # pylint: disable=consider-using-with
  try:
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    print('Another mutation run is going on in this checkout.')
    return 2
  note = recover()
  if note:
    print(note, flush=True)
  known = {m.id: m for m in MUTANTS}
  assert len(known) == len(MUTANTS), 'duplicate mutant ids'
  unknown = [i for i in args.only or () if i not in known]
  if unknown:
    parser.error(f'unknown mutant(s) {", ".join(unknown)}; see --list')
  chosen = [known[i] for i in args.only] if args.only else list(MUTANTS)
  bad = {m.id: problems(m) for m in chosen}
  bad = {k: v for k, v in bad.items() if v}
  if args.list:
    for m in chosen:
      flag = '  PROBLEM: ' + '; '.join(bad[m.id]) if m.id in bad else ''
      print(f'{m.id:32} {m.module}: {m.meaning}{flag}')
      for test in m.tests:
        print(f'{"":35}{test}')
    print(f'{len(chosen)} mutants.')
    return 2 if bad else 0
  if bad:
    for k, v in bad.items():
      print(f'{k}: {"; ".join(v)}')
    return 2

  SIGNALS.install()
  start = time.monotonic()
  cache = args.cache or tempfile.mkdtemp(prefix='jaylyrics-mutation-xla-')
  rows = []
  try:
    if not args.no_baseline:
      tests = list(dict.fromkeys(t for m in chosen for t in m.tests))
      print(f'Baseline: {len(tests)} test selections on the unchanged tree...',
            flush=True)
      base = run_tests(tests, cache, 4 * args.timeout)
      if base.status != 'survived':
        print(base.output[-6000:])
        print(f'The tests fail without any mutant ({base.status}: '
              f'{base.detail}); fix them first.')
        return 2
      print(f'  passed in {base.seconds:.0f} s.', flush=True)
    for i, m in enumerate(chosen, 1):
      print(f'[{i}/{len(chosen)}] {m.id} ({m.path.relative_to(REPO)}) ...',
            end=' ', flush=True)
      with planted(m):
        outcome = run_tests(m.tests, cache, args.timeout)
      rows.append((m, outcome))
      print(f'{outcome.status} in {outcome.seconds:.0f} s '
            f'{outcome.detail}'.rstrip(), flush=True)
      if outcome.status == 'error':
        print(outcome.output[-3000:])
  except Interrupted as e:
    print(f'\nInterrupted ({e}); the tree is as it was.')
    return 130
  finally:
    if not args.cache:
      shutil.rmtree(cache, ignore_errors=True)
  elapsed = time.monotonic() - start
  print()
  print(_table(rows))
  caught = sum(o.status in ('killed', 'timeout') for _, o in rows)
  survivors = [m.id for m, o in rows if o.status == 'survived']
  errors = [m.id for m, o in rows if o.status == 'error']
  print(f'\nScore: {caught}/{len(rows)} killed ({100 * caught / len(rows):.1f}%)'
        f'; survived: {", ".join(survivors) or "none"}'
        + (f'; errors: {", ".join(errors)}' if errors else '')
        + f'. {_minutes(elapsed)}.')
  return 0 if not survivors and not errors else 1


if __name__ == '__main__':
  sys.exit(main())
