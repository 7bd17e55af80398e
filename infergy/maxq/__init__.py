"""MaxQ tuning: GPU control, restore journal, sweep search, Pareto fronts, recommendation."""
