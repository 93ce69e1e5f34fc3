// PolicyEvaluator: see Evaluator.swift.
