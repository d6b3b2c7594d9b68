"""finsent's HTTP API (FastAPI): history, aggregates, alerts, subscriptions with signed
webhooks, a live alert stream, ad-hoc scoring and analysts' feedback.

    finsent api                      # uvicorn on FINSENT_API_HOST:FINSENT_API_PORT
    finsent apikey create --name desk --scope read --scope subscribe
"""
