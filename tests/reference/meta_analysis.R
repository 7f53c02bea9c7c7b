# Reference values for crc_core.meta_analysis.pool_logit, from R with metafor (Debian's
# r-cran-metafor), on tests/reference/meta_analysis_data.csv: per case, one logit(AUC) (yi) and
# its delta-method DeLong variance (vi) per cohort, written by crc_core.meta_analysis.cohort_aucs
# from simulated cohorts. The cases: four heterogeneous cohorts (τ² > 0), three homogeneous ones
# (Q < df, τ² floored at 0), two heterogeneous, two homogeneous (Q < df) and six. For each, random
# effects by DerSimonian-Laird with the z CI and with Hartung-Knapp-Sidik-Jonkman's (test = "knha"),
# and the fixed-effect (inverse variance) estimate.
#
#   Rscript tests/reference/meta_analysis.R tests/reference/meta_analysis_data.csv tests/reference/meta_analysis_r.json
suppressPackageStartupMessages(library(metafor))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1], colClasses = c(case = "character", cohort = "character", yi = "numeric", vi = "numeric"))
summary_of <- function(fit) {
  list(estimate = unname(fit$b[1, 1]), se = fit$se, low = fit$ci.lb, high = fit$ci.ub, p = fit$pval,
       tau2 = fit$tau2, i2 = fit$I2, q = fit$QE, q_df = fit$k - fit$p, q_p = fit$QEp,
       weights = unname(weights(fit)))
}
out <- list()
for (case in unique(d$case)) {
  rows <- d[d$case == case, ]
  out[[case]] <- list(
    z = summary_of(rma(yi = rows$yi, vi = rows$vi, method = "DL", test = "z")),
    knha = summary_of(rma(yi = rows$yi, vi = rows$vi, method = "DL", test = "knha")),
    fixed = summary_of(rma(yi = rows$yi, vi = rows$vi, method = "FE")))
}
out$metafor <- as.character(packageVersion("metafor"))
out$r <- R.version.string
writeLines(jsonlite::toJSON(out, digits = NA, auto_unbox = TRUE, pretty = FALSE), args[2])
