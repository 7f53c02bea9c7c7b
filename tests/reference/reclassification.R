# Reference values for crc_core.reclassification, from R 4.2.2 with Hmisc 4.8-0 and lmtest 0.9-40
# (Debian bookworm's r-cran-* packages) and PredictABEL 1.2-4 (not in Debian: its R/PredictABEL.R
# from the CRAN source is sourced, so `reclassification` is the package's own function, which
# calls Hmisc::improveProb), on tests/reference/reclassification_data.csv (synthetic, 150
# patients: outcome y, a DL score dl, and clinical age, t34 (T3-4 = 1) and log_cea).
#
#   Rscript tests/reference/reclassification.R tests/reference/reclassification_data.csv \
#       tests/reference/reclassification_r.json path/to/PredictABEL/R/PredictABEL.R
suppressPackageStartupMessages({ library(Hmisc); library(lmtest) })
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
source(args[3])
small <- glm(y ~ dl, family = binomial, data = d)                         # the DL model alone
large <- glm(y ~ dl + age + t34 + log_cea, family = binomial, data = d)   # DL + clinical
lrt <- anova(small, large, test = "LRT")                                  # anova(glm_small, glm_large, test = "LRT")
lr <- lrtest(small, large)                                                # lmtest::lrtest
# The two models' probabilities rounded to 2 decimals, so that some patients tie (no change) and
# both sides of the test start from the same numbers.
p_old <- round(fitted(small), 2)
p_new <- round(fitted(large), 2)
ip <- improveProb(p_old, p_new, d$y)                                      # Hmisc::improveProb
printed <- capture.output(reclassification(data = d, cOutcome = 1, predrisk1 = p_old, predrisk2 = p_new,
                                           cutoff = c(0, 0.3, 0.7, 1)))   # PredictABEL::reclassification
out <- list(
  lrt_deviance = lrt$Deviance[2], lrt_df = lrt$Df[2], lrt_p = lrt$`Pr(>Chi)`[2],
  lrtest_chisq = lr$Chisq[2], lrtest_df = lr$Df[2], lrtest_p = lr$`Pr(>Chisq)`[2],
  loglik_small = as.numeric(logLik(small)), loglik_large = as.numeric(logLik(large)),
  p_old = unname(p_old), p_new = unname(p_new),
  improveProb = lapply(unclass(ip)[c("n", "na", "nb", "pup.ev", "pup.ne", "pdown.ev", "pdown.ne", "nri", "se.nri",
                                     "z.nri", "nri.ev", "se.nri.ev", "z.nri.ev", "nri.ne", "se.nri.ne", "z.nri.ne",
                                     "improveSens", "improveSpec", "idi", "se.idi", "z.idi")], unname),
  predictabel_printed = grep("NRI\\(Continuous\\)|IDI", printed, value = TRUE),
  r = R.version.string
)
writeLines(jsonlite::toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), args[2])
