"""Rule-based rewards: answer accuracy (math, GSM8K, Countdown) and R1 output format."""

from mindspeed_rl.rewards.base import Score, Scorer
from mindspeed_rl.rewards.registry import SCORERS, RewardConfig, RewardResult, RewardScorer

__all__ = ["SCORERS", "RewardConfig", "RewardResult", "RewardScorer", "Score", "Scorer"]
