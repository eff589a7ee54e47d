"""Stand-in upstream entry point: options that name classes (with their kwargs), then the training loop."""
import click
from training import training_loop


def setup_training_kwargs(outdir, iterations):
    return dict(D_kwargs=dict(class_name="training.networks.Discriminator", features=4),
                loss_kwargs=dict(class_name="training.loss.Loss"), outdir=outdir, iterations=iterations, batch=8)


@click.command()
@click.option("--outdir", required=True)
@click.option("--data", required=True)
@click.option("--gpus", type=int, default=1)
@click.option("--iterations", type=int, default=8)
def main(outdir, data, gpus, iterations):
    training_loop.training_loop(**setup_training_kwargs(outdir, iterations))
