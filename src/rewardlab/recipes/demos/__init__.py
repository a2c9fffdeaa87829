"""The offline CPU demos of ``rewardlab demo``: ``text`` (generated pairs, a tiny Qwen2-style RM), ``vision``
(screenshots, a tiny VLM RM) and ``rl`` (a tiny policy trained with a rule and a learned reward). Each builds its own
data and tiny models from configs, so it runs anywhere in minutes; the library code they call is the real one."""
