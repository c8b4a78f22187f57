"""TradExpert (Ding et al., 2024): four specialist experts report, a General Expert decides.

Every `--rebalance-every` sessions the News, Market, Alpha and Fundamental experts report on each
ticker from the data visible that day (with `--expert-model`, a language model turns each expert's
facts into its report; otherwise the facts are the report). The General Expert then either
predicts rise/fall for each ticker (`--mode predict`, All-in All-out on each, equal sleeves) or
compares tickers two at a time (`--mode rank`), asking both orders so a position bias cancels;
`tradesim.ranking` turns the comparisons into a ranking and the K best are held at equal weight.

The General Expert is `fitted` by default: a comparator (or a rise/fall classifier) trained on the
training period over the Market and Alpha numbers and the offline encoder's embeddings of the News
and Fundamental reports, labelled with realized relative returns over the horizon. Any model spec
(`minilm`, `hf:...`, `openai:...`) is used zero-shot instead, and `random` is the chance baseline.

Layout: `strategy` (the strategy: settings, experts, fitting, deciding), `experts` (the four
specialists' facts), `general` (the General Expert), `prompts` (every prompt and its options).
"""
