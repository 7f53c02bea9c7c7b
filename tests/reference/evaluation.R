# Reference values for crc_core.evaluation, from R 4.2.2 with pROC 1.18.0 and rms 6.5-0 (Debian
# bookworm's r-cran-* packages), on tests/reference/evaluation_data.csv (synthetic: outcome y, two
# models' probabilities a and b, b rounded to 2 decimals so that it has ties).
#
#   Rscript tests/reference/evaluation.R tests/reference/evaluation_data.csv tests/reference/evaluation_r.json
suppressPackageStartupMessages({ library(pROC); library(rms) })
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
ra <- roc(d$y, d$a, levels = c(0, 1), direction = "<", quiet = TRUE)
rb <- roc(d$y, d$b, levels = c(0, 1), direction = "<", quiet = TRUE)
ci_a <- ci.auc(ra, method = "delong")                                  # pROC::ci.auc(method = "delong")
ci_b <- ci.auc(rb, method = "delong")
test <- roc.test(ra, rb, method = "delong")                            # pROC::roc.test(method = "delong")
best <- coords(ra, "best", best.method = "youden", ret = c("threshold", "sensitivity", "specificity"))
cal_a <- val.prob(d$a, d$y, pl = FALSE)                                # rms::val.prob
cal_b <- val.prob(d$b, d$y, pl = FALSE)
# Hosmer-Lemeshow as ResourceSelection::hoslem.test(y, p, g = 10) computes it (that package is not
# in Debian): groups cut at the type-7 quantiles of p, chi-square over both outcome columns, df = g - 2.
hoslem <- function(y, p, g = 10) {
  cells <- cut(p, breaks = quantile(p, probs = seq(0, 1, 1 / g)), include.lowest = TRUE)
  observed <- xtabs(cbind(1 - y, y) ~ cells)
  expected <- xtabs(cbind(1 - p, p) ~ cells)
  chisq <- sum((observed - expected)^2 / expected)
  c(chisq = chisq, p = 1 - pchisq(chisq, g - 2))
}
# Net benefit as dcurves::dca defines it (dcurves is not in Debian): TP/n - FP/n * pt / (1 - pt).
net_benefit <- function(y, p, pt) sum(p >= pt & y == 1) / length(y) - sum(p >= pt & y == 0) / length(y) * pt / (1 - pt)
thresholds <- c(0.1, 0.2, 0.3, 0.5, 0.7)
at <- as.numeric(best$threshold[1])
tp <- sum(d$a >= at & d$y == 1); fn <- sum(d$a < at & d$y == 1); tn <- sum(d$a < at & d$y == 0); fp <- sum(d$a >= at & d$y == 0)
wilson <- function(k, n) as.numeric(prop.test(k, n, correct = FALSE)$conf.int)   # prop.test without correction: Wilson
out <- list(
  auc_a = as.numeric(ci_a[2]), ci_a = as.numeric(ci_a[c(1, 3)]),
  auc_b = as.numeric(ci_b[2]), ci_b = as.numeric(ci_b[c(1, 3)]),
  delong_z = unname(test$statistic), delong_p = test$p.value, delong_diff_ci = as.numeric(test$conf.int),
  youden_thresholds = as.numeric(best$threshold),
  sensitivity_ci = wilson(tp, tp + fn), specificity_ci = wilson(tn, tn + fp), ppv_ci = wilson(tp, tp + fp),
  val_prob_a = as.list(cal_a[c("Brier", "Intercept", "Slope", "S:z", "S:p")]),
  val_prob_b = as.list(cal_b[c("Brier", "Intercept", "Slope", "S:z", "S:p")]),
  hoslem_a = as.list(hoslem(d$y, d$a)),
  net_benefit_a = sapply(thresholds, function(pt) net_benefit(d$y, d$a, pt)), thresholds = thresholds,
  r = R.version.string
)
writeLines(jsonlite::toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), args[2])
