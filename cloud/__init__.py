"""What client.py and deploy.py share: boto3 clients and the record of the deployed runtime."""
