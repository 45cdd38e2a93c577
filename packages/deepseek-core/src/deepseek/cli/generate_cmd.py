"""``deepseek generate``: sample text from a trained model.

Nothing here imports torch at module level: ``deepseek --help`` stays fast.
"""

from __future__ import annotations

import json

import click

from deepseek.api_args import DECODE_NUMBERS, DECODE_WHOLE
from deepseek.cli.context import command_host
from deepseek.cli.params import PATH, SEED, Device, Ranged, count
from deepseek.cli.train_cmd import DTYPE_OPTION, STRATEGY_OPTION

MAX_BATCH = 65_536
"""The most prompts ``--batch-size`` decodes together (10**30 was taken)."""


@click.command("generate")
@click.option("--checkpoint", "checkpoint", required=True, type=PATH, metavar="PATH",
              help="Run folder, checkpoint folder or exported .safetensors.")
@click.argument("prompt", required=False, default="")
@click.option("--max-new-tokens", type=count(*DECODE_WHOLE["max_new_tokens"]), default=200, show_default=True)
@click.option("--temperature", type=Ranged(DECODE_NUMBERS["temperature"]), default=0.8, show_default=True,
              help="0 is greedy.")
@click.option("--top-k", type=count(*DECODE_WHOLE["top_k"]), default=50, show_default=True, help="Draw from the k likeliest tokens.")
@click.option("--top-p", type=Ranged(DECODE_NUMBERS["top_p"]), default=None,
              help="Nucleus sampling: draw from the fewest likeliest tokens holding this share of the probability "
                   "(0 < P <= 1; after --top-k). Default: off.")
@click.option("--repetition-penalty", type=Ranged(DECODE_NUMBERS["repetition_penalty"]), default=1.0, show_default=True,
              help="Hugging Face's repetition_penalty: logits of tokens already in the prompt or the output are "
                   "divided by P where positive and multiplied by P where negative, before --temperature (greedy "
                   "included). 1.0 is off; above 1 discourages repeats, below 1 favours them.")
@click.option("--stop", "stop", multiple=True, metavar="TEXT",
              help="End a sample before the first occurrence of TEXT (repeatable; in bash $'\\n\\n' is a blank "
                   "line); decoding stops once every sample of a batch has ended.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--device", type=Device(), default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--prompts", "prompts_file", default=None, type=PATH, metavar="FILE",
              help="Serve every line of this UTF-8 file as a prompt (batched by token length); a .jsonl file holds "
                   "one JSON string or {\"prompt\": ...} per line (prompts with line breaks). Prints one JSON line "
                   "per prompt and a tokens/s and time-to-first-token summary on stderr.")
@click.option("--num-samples", type=count(1, 1024), default=1, show_default=True,
              help="Samples per prompt (Hugging Face's num_return_sequences), decoded together; above 1 each is "
                   "printed as a JSON line with its prompt and number.")
@click.option("--batch-size", type=count(1, MAX_BATCH), default=32, show_default=True,
              help="With --prompts: at most this many prompts decoded together.")
@click.option("--cuda-graphs/--no-cuda-graphs", "cuda_graphs", default=None,
              help="Decode on a static KV cache, each step (and its sampling) one CUDA graph replay (CUDA, one "
                   "process). Faster steps for a capture (and with --compile-step a compile) once per command; "
                   "default off: on short generations the set-up costs more than it saves.")
@click.option("--compile-step/--no-compile-step", "compile_step", default=None,
              help="With --cuda-graphs: compile the graphed step with inductor: faster steps for seconds of "
                   "compiling once per batch size and cache length (64-position steps). Default: on with --prompts, "
                   "off for a single prompt.")
@STRATEGY_OPTION
@DTYPE_OPTION
def generate(
    checkpoint: str, prompt: str, max_new_tokens: int, temperature: float, top_k: int, top_p: float | None,
    repetition_penalty: float, stop: tuple[str, ...], seed: int, device: str,
    prompts_file: str | None, num_samples: int, batch_size: int, cuda_graphs: bool | None, compile_step: bool | None,
    strategy: str | None, dtype: str,
) -> None:
    """Sample text from a trained model (KV-cache decoding). Without PROMPT the model starts a new
    document (from the separator token that ends every training document); a sample ends where
    the model ends its document (that separator, not printed), before a --stop text, or after
    --max-new-tokens."""
    from deepseek.devices import use_default_cpu_threads
    from deepseek.models.static_decoding import choose_static
    from deepseek.training.inference import (
        generating_tokenizer,
        load_placed,
        placed_run,
        sample,
        served_calls,
        trained_tokenizer,
    )
    from deepseek.training.serving import read_prompts, serve

    if prompts_file is not None and prompt:
        from deepseek.errors import UsageError

        raise UsageError("generate: give a PROMPT or --prompts FILE, not both; put the prompt in the file")
    prompts = read_prompts(prompts_file) if prompts_file is not None else None
    if num_samples > 1:  # each prompt num_samples times, served as one request list
        prompts = [p for p in (prompts if prompts is not None else [prompt]) for _ in range(num_samples)]
    use_default_cpu_threads()
    tokenizer = trained_tokenizer(checkpoint, host=command_host())
    model, config, _, placer = load_placed(checkpoint, device, strategy=strategy, host=command_host(), dtype=dtype)
    calls = served_calls(model, config, command_host(), placer)  # a plugin model's bug: its one line
    with placed_run(placer):
        static, note = choose_static(model, cuda_graphs, compile_step=compile_step, serving=prompts is not None)
        if note is not None and (placer is None or placer.is_global_zero):
            click.echo(note, err=True)
        if prompts is None:
            text = sample(model, prompt, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                          top_p=top_p, stop=stop, seed=seed, tokenizer=tokenizer, static=static,
                          repetition_penalty=repetition_penalty, model_calls=calls)
        else:
            served = serve(model, prompts, tokenizer=generating_tokenizer(model, tokenizer, model_calls=calls),
                           max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                           stop=stop, seed=seed, batch_size=batch_size, static=static,
                           repetition_penalty=repetition_penalty, model_calls=calls)
    if placer is not None and not placer.is_global_zero:
        return
    if prompts is None:
        click.echo(prompt + text)
        return
    for i, (source, continuation) in enumerate(zip(prompts, served.texts, strict=True)):
        number = {"sample": i % num_samples} if num_samples > 1 else {}
        click.echo(json.dumps({"prompt": source, **number, "text": continuation}))
    click.echo(served.summary(), err=True)
